"""`bench/gpu_suite.py --smoke` runs every part on a CPU under a Python that, like the lent GPU
machine's, has no MLflow, DALI, submitit or torch_optimizer (nor psutil and matplotlib, which
that machine's list of packages lacks too): the suite must finish, skip the DALI parts with
a reason, and measure the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFUSED = ("mlflow", "nvidia", "submitit", "torch_optimizer", "psutil", "matplotlib")
PARTS = {"matmul", "train_step", "dali", "data_wait", "ddp", "translate"}

SITECUSTOMIZE = f'''"""Simulated GPU-machine Python: these packages are not installed."""
import sys

REFUSED = {set(REFUSED)!r}


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (simulated)", name=name)
        return None


sys.meta_path.insert(0, Refuse())
'''


@pytest.fixture
def gpu_machine_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a Python without the optional packages, proven to refuse them."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    for name in ("mlflow", "nvidia.dali", "torch_optimizer"):
        probe = subprocess.run([sys.executable, "-c", f"import {name}"], env=env,
                               capture_output=True, text=True)
        assert probe.returncode and "simulated" in probe.stderr, name
    return env


@pytest.mark.slow
def test_smoke_suite_without_optional_packages(gpu_machine_env: dict[str, str],
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "bench/gpu_suite.py", "--smoke", "--out", str(out)],
                          cwd=ROOT, env=gpu_machine_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = json.loads((out / "gpu_suite.json").read_text())
    assert raw["suite"]["finished"] and raw["suite"]["smoke"]
    parts = raw["parts"]
    assert set(parts) == PARTS
    failed = [r["label"] + ": " + r["error"] for p in parts.values() for r in p["rows"]
              if r["status"] == "failed"]
    assert not failed, "\n".join(failed)

    assert parts["dali"]["status"] == "skipped"
    (dali,) = parts["dali"]["rows"]
    assert "DALI" in dali["reason"]
    wait = {r["backend"]: r for r in parts["data_wait"]["rows"]}
    assert wait["dali"]["status"] == "skipped" and "DALI" in wait["dali"]["reason"]
    assert wait["torch"]["status"] == "ok" and 0 <= wait["torch"]["wait_frac"] < 1

    measured = [r for r in parts["train_step"]["rows"] if r["status"] == "ok"]
    assert {r["config"] for r in measured} == {"cyclegan", "liss"}
    for r in measured:
        assert min(r["step_s"], r["img_per_s"], r["peak_gb"], r["tflops"]) > 0, r
    for part in ("ddp", "translate"):
        rows = parts[part]["rows"]
        assert all(r["status"] == "ok" and r["img_per_s"] > 0 for r in rows), rows
    # world size 1 without torchrun's environment runs unwrapped, with it in a group of one
    assert [r["process_group"] for r in parts["ddp"]["rows"]] == [None, "gloo"]

    table = (out / "gpu_suite.md").read_text()
    assert table.strip() in proc.stdout
    assert "| cyclegan | 32 |" in table and "skipped: " in table
