"""The local launcher for real: tiny trainings as torchrun processes, side by side, logging to
one SQLite MLflow store under the sweep's parent run; skips, --force, a failing point, and a
preempted point resumed from its checkpoint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from tests.conftest import TINY

pytestmark = pytest.mark.slow
QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def tiny_spec(tmp_path: Path, synth_root: Path, name: str = "loc", **fields) -> Path:
    overrides = dict(o.split("=", 1) for o in TINY)
    overrides.update({"data.root": str(synth_root), "run.dir": str(tmp_path / "runs"),
                      "tasks.auxiliary_tasks": "rotation,depth", "train.max_steps": 4},
                     **fields.pop("overrides", {}))
    spec = {"name": name, "base": str(QUICKSTART),
            "overrides": {k: yaml.safe_load(v) if isinstance(v, str) else v
                          for k, v in overrides.items()}, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liss", "sweep", *args], capture_output=True,
                          text=True, timeout=timeout)


def mlflow_runs(store: Path) -> list:
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("liss")
    return client.search_runs([experiment.experiment_id])


def test_parallel_sweep_rerun_and_force(tmp_path: Path, synth_root: Path) -> None:
    spec = tiny_spec(tmp_path, synth_root, axes={"schedule.task_schedule": ["parallel", "liss"]})
    sweep_dir = tmp_path / "runs" / "loc"
    done = sweep(str(spec), "--launcher", "local", "--max-parallel", "2")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    events = [line.split()[1] for line in out.splitlines() if line.startswith("[local]")]
    assert events[:2] == ["started", "started"], "both points run at once"
    for name in ("loc-parallel", "loc-liss"):
        assert re.search(rf"{name} +completed +{sweep_dir / name / 'launch.log'}\n", out)
        assert (sweep_dir / name / "status.json").read_text().startswith(
            '{"status": "completed", "step": 4')
        log = (sweep_dir / name / "launch.log").read_text()
        assert "database is locked" not in log and "WARNING liss.tracking" not in log, (
            "tracking errors with two concurrent SQLite writers")
    store = tmp_path / "runs" / "mlflow.db"  # the store of every run under run.dir
    assert f"mlflow ui --backend-store-uri sqlite:///{store}" in out
    assert not (sweep_dir / "mlflow.db").exists()

    runs = mlflow_runs(store)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == "loc" and parent.info.status == "FINISHED"
    assert parent.data.tags["sweep"] == "loc"
    children = [r for r in runs if r is not parent]
    assert sorted(r.info.run_name for r in children) == ["loc-liss", "loc-parallel"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["sweep_id"] == parent.data.tags["sweep_id"]
        assert child.info.status == "FINISHED"

    again = sweep(str(spec), "--launcher", "local")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 to run, 2 skipped as completed" in again.stdout
    assert "[local]" not in again.stdout

    forced = sweep(str(spec), "--launcher", "local", "--max-parallel", "2", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert forced.stdout.count("[local] started") == 2
    assert len(list(sweep_dir.glob("loc-liss.replaced-*"))) == 1, "the old run is kept"
    runs = mlflow_runs(store)
    assert len(runs) == 5, "same parent, two new children"
    assert {r.data.tags.get("mlflow.parentRunId") for r in runs} == {None, parent.info.run_id}


def test_failing_point_is_reported(tmp_path: Path, synth_root: Path) -> None:
    spec = tiny_spec(tmp_path, synth_root, name="bad", points=[
        {"run.seed": 1, "data.root": str(tmp_path / "missing")}])
    done = sweep(str(spec), "--launcher", "local")
    log = tmp_path / "runs" / "bad" / "bad" / "launch.log"
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[local] bad: failed (torchrun exit 1, " in done.stdout
    assert re.search(rf"\nbad +failed +torchrun exit 1: {log}\n", done.stdout)
    assert "dataset folder not found" in log.read_text()
    status = sweep("status", str(spec))
    assert re.search(rf"\nbad +failed +torchrun exit 1: {log}\n", status.stdout), status.stdout


def _trainer_pid(run_name: str) -> int | None:
    """The trainer process (torchrun's worker) of a run, found by its command line."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"liss" in argv and f"run.name={run_name}".encode() in argv and (
                b"torch.distributed.run" not in argv):
            return int(proc.name)
    return None


def test_preempted_point_is_resumed(tmp_path: Path, synth_root: Path) -> None:
    spec = tiny_spec(tmp_path, synth_root, name="pre", overrides={
        "train.max_steps": 30, "train.ckpt_every": 5, "train.val_every": 10,
        "train.log_every": 10})
    run_dir = tmp_path / "runs" / "pre" / "pre"
    proc = subprocess.Popen([sys.executable, "-m", "liss", "sweep", str(spec), "--launcher",
                             "local"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoints" / "step_5.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.2)
        pid = _trainer_pid("pre")
        assert pid is not None
        os.kill(pid, signal.SIGUSR2)  # what a scheduler sends: checkpoint and exit 75
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "[local] pre: preempted, resuming from its checkpoint" in out
    assert "[local] pre: completed (torchrun exit 0, " in out and ", 2 attempts)" in out
    log = (run_dir / "launch.log").read_text()
    stopped = int(log.split("preempted at step ")[1].split(":")[0])
    assert 5 <= stopped < 30
    assert f"resumed from {run_dir}/checkpoints/step_{stopped}.pt at step {stopped}" in log
    assert (run_dir / "status.json").read_text().startswith('{"status": "completed", '
                                                            '"step": 30')
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 30
