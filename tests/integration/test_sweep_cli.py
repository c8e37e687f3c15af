"""`liss sweep --dry-run` in a real `python -m liss` process: the commands it would run, alone
on stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.unit.test_sweep import QUICKSTART, write_spec


def test_local_dry_run_prints_commands(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, axes={"run.seed": [0, 1]},
                      resources={"nproc_per_node": 2})
    done = subprocess.run([sys.executable, "-m", "liss", "sweep", str(spec), "--launcher",
                           "local", "--dry-run", "--max-parallel", "2"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})  # CPU points
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("[dry-run] sw-") for line in lines), out
    assert "-m torch.distributed.run --standalone --nproc_per_node=2 -m liss train" in lines[0]
    assert f"{QUICKSTART} " in lines[0] and "run.seed=0" in lines[0] and "run.seed=1" in lines[1]
    assert f"run.dir={tmp_path / 'runs' / 'sw'}" in lines[0]
    assert "train.resume=auto run.name=sw-s0" in lines[0]
    assert "LISS_SWEEP_ID=sw-" in lines[0] and "LISS_PARENT_RUN_ID" not in out
    assert "CUDA_VISIBLE_DEVICES" not in out
    assert f">> {tmp_path / 'runs' / 'sw' / 'sw-s1' / 'launch.log'} 2>&1" in lines[1]
    assert "sweep sw: 2 points, 2 to run; launcher local (dry run)" in done.stderr
    assert "mlflow ui --backend-store-uri sqlite:///" in done.stderr
    assert not (tmp_path / "runs").exists(), "a dry run creates nothing"
