"""The DALI backend end to end: liss imports and falls back without DALI (a fresh process),
and a short training run on the DALI CPU pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liss import checkpoint, config
from liss.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_liss_imports_without_dali() -> None:
    code = ("import sys; sys.modules['nvidia'] = None\n"
            "import liss.cli, liss.data.pipeline, liss.data.dali_backend, liss.train.trainer\n"
            "from liss.data.pipeline import resolve_backend\n"
            "assert resolve_backend('auto', 'cpu') == 'torch'\n"
            "try:\n"
            "    resolve_backend('dali', 'cpu')\n"
            "except Exception as e:\n"
            "    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "pip install liss[dali]" in done.stdout


@pytest.mark.slow
def test_short_training_run_on_the_dali_cpu_pipeline(tiny_overrides: list[str]) -> None:
    # no tracking: MLflow's store set-up would double this test's time (the data-wait
    # metric it logs is read back in bench/data_pipeline.py and test_train.py)
    assert main(["train", *tiny_overrides, "data.backend=dali", "data.num_workers=1",
                 "train.max_steps=4", "train.val_every=4", "train.device=cpu",
                 "tracking.uri=none"]) == 0
    run_dir = config.load(None, tiny_overrides).run_dir
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    assert config.load(run_dir / "config.yaml", []).data.backend == "dali"
    state = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    assert state["step"] == 4 and state["trainer"]["sample_position"] == 4 * 2
    assert (run_dir / "grids" / "step_4.png").is_file()
