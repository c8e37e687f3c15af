"""What the SLURM launcher asks submitit for, from a sweep spec's resources and slurm
settings, and which paths it refuses as node-local: no cluster, no process. (On a real
cluster: integration/test_slurm.py.)"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import yaml

from launch import slurm
from launch.slurm import executor_parameters
from launch.sweep import SweepSpec, expand, load_spec
from liss.config import ConfigError
from tests.unit.test_sweep import QUICKSTART


def test_resources_map_to_submitit_parameters(tmp_path: Path) -> None:
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("""
name: big
resources: {nodes: 2, gpus_per_node: 4, cpus_per_task: 8, mem_gb: 64, timeout_min: 240}
slurm: {partition: gpu, account: lab, qos: high, constraint: a100, signal_delay_s: 120,
        additional_parameters: {exclusive: true}, setup: [module load cuda]}
""")
    assert executor_parameters(load_spec(spec_path), max_parallel=3) == {
        "name": "liss-big", "nodes": 2, "tasks_per_node": 4, "gpus_per_node": 4,
        "cpus_per_task": 8, "mem_gb": 64, "timeout_min": 240, "slurm_array_parallelism": 3,
        "slurm_partition": "gpu", "slurm_account": "lab", "slurm_qos": "high",
        "slurm_constraint": "a100", "slurm_additional_parameters": {"exclusive": True},
        "slurm_setup": ["module load cuda"], "slurm_signal_delay_s": 120}
    spec_path.write_text("name: cpu\nresources: {nproc_per_node: 2}\n")
    params = executor_parameters(load_spec(spec_path), max_parallel=1)
    assert params["tasks_per_node"] == 2 and "gpus_per_node" not in params


# --------------------------------------------------------------------------- shared paths


def shared_spec(tmp_path: Path, run_dir: Path, data_root: Path, base: Path | None = QUICKSTART,
                **slurm) -> SweepSpec:
    spec_path = tmp_path / "paths.yaml"
    spec_path.write_text(yaml.safe_dump({
        **({"base": str(base)} if base else {}), "slurm": slurm,
        "overrides": {"run.dir": str(run_dir), "data.root": str(data_root)}}))
    return load_spec(spec_path)


def test_shared_paths_are_what_a_job_reads_and_writes(tmp_path: Path) -> None:
    spec = shared_spec(tmp_path, Path("/shared/runs"), Path("/shared/data/h2z"))
    found = dict(slurm.shared_paths(spec, expand(spec)))
    assert found == {"python (the venv jobs run)": Path(sys.executable).absolute(),
                     "working directory": Path.cwd(),
                     "run.dir (with submitit's slurm/ folder)": Path("/shared/runs/paths"),
                     "base config": QUICKSTART,
                     "data.root (point paths)": Path("/shared/data/h2z"),
                     # the project's MLflow store, beside the sweep's folder
                     "tracking.uri": Path("/shared/runs/mlflow.db")}


@pytest.mark.parametrize(("path", "root"), [
    ("/tmp/x/runs", "/tmp"), ("/var/tmp/data", "/var/tmp"), ("/dev/shm/a", "/dev/shm"),
    ("/scratch/me/x", "/scratch/me"),  # $TMPDIR below
    ("/home/me/runs", None), ("/tmpfoo/runs", None),
])
def test_node_local_root(path: str, root: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", "/scratch/me")
    assert slurm.node_local_root(Path(path)) == root


def test_node_local_through_a_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMPDIR", raising=False)
    local_dir = tmp_path / "node-local"
    local_dir.mkdir()
    link = tmp_path / "looks-shared"
    link.symlink_to(local_dir)
    monkeypatch.setattr(slurm, "NODE_LOCAL", (str(tmp_path / "elsewhere"),))
    assert slurm.node_local_root(link / "x") is None
    monkeypatch.setattr(slurm, "NODE_LOCAL", (str(local_dir),))
    assert slurm.node_local_root(link / "x") == str(local_dir)


def test_node_local_paths_are_refused_when_jobs_leave_this_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.setattr(slurm, "cluster_is_this_host", lambda p: asked.append(p) or False)
    # the venv, the working directory and the base config (none) on shared paths, wherever
    # this checkout lives (a CI clone may be under /tmp)
    monkeypatch.setattr(sys, "executable", "/shared/venv/bin/python")
    monkeypatch.chdir("/")
    spec = shared_spec(tmp_path, Path("/shared/runs"), Path("/tmp/h2z"), None, partition="gpu")
    with pytest.raises(ConfigError) as info:
        slurm.check_shared_paths(spec, expand(spec))
    message = str(info.value)
    assert message.startswith("data.root (point paths)='/tmp/h2z': is under /tmp, which is "
                              "local to each node, and the jobs may run on other nodes")
    assert "slurm.allow_local_paths=true" in message and "\n" not in message
    assert asked == ["gpu"], "sinfo is asked about the partition the jobs go to"

    opted_out = shared_spec(tmp_path, Path("/shared/runs"), Path("/tmp/h2z"), None,
                            allow_local_paths=True)
    slurm.check_shared_paths(opted_out, expand(opted_out))
    with pytest.raises(ConfigError, match=r"sweep\.slurm\.allow_local_paths.*true or false"):
        bad = shared_spec(tmp_path, Path("/shared/runs"), Path("/tmp/h2z"), None,
                          allow_local_paths="yes")
        slurm.check_shared_paths(bad, expand(bad))

    shared = shared_spec(tmp_path, Path("/shared/runs"), Path("/shared/h2z"), None)
    asked.clear()
    slurm.check_shared_paths(shared, expand(shared))
    assert asked == [], "nothing node-local: SLURM is not asked"


def test_a_cluster_of_this_host_alone_may_use_local_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm, "cluster_is_this_host", lambda p: True)
    spec = shared_spec(tmp_path, tmp_path / "runs", tmp_path / "data")
    slurm.check_shared_paths(spec, expand(spec))


def test_this_host() -> None:
    assert slurm._is_this_host("localhost") and slurm._is_this_host("127.0.0.1")
    assert slurm._is_this_host(socket.gethostname())
    assert not slurm._is_this_host("192.0.2.7")  # TEST-NET-1: never this machine
