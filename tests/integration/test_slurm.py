"""The SLURM launcher against a real cluster: Debian's slurm-wlm + munge on this host, started
by this test session (tests/integration/cluster/slurm-up.sh) and stopped by PID at the end. Tiny
trainings run as a submitit job array; a failing point, a two-task job and a
preemption/requeue round trip are checked from the trainers' own outputs."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from liss.data import synthetic
from tests.integration.test_launch_local import sweep, tiny_spec

CLUSTER = Path(__file__).parent / "cluster"
SLURM_TOOLS = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue",
               "scontrol", "scancel")
APT = "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
RESOURCES = {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 30}


def _free_port_pair() -> int:
    """A port p with p and p+1 free (slurmctld, slurmd), so a cluster already running on
    this machine (SLURM's default 6817) is left alone."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="session")
def slurm_cluster():
    missing = [t for t in SLURM_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} not found); "
                    f"as root: {APT}")
    root = Path(tempfile.mkdtemp(prefix="liss-slurm-"))
    env = {**os.environ, "SLURM_TEST_PORT": str(_free_port_pair())}
    up = subprocess.run(["bash", str(CLUSTER / "slurm-up.sh"), str(root)], env=env,
                        capture_output=True, text=True, timeout=120)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(root / "slurm.conf")  # sbatch passes it on to the jobs
    try:
        assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout}{up.stderr}"
        yield root
    finally:
        subprocess.run(["bash", str(CLUSTER / "slurm-down.sh"), str(root)], timeout=60)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def synth20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 training images per domain: 2 validation images, so each of 2 ranks gets one."""
    root = tmp_path_factory.mktemp("data") / "synth20"
    synthetic.generate(root, n_train=20, n_test=2, size=40, seed=0)
    return root


def squeue_state(job_id: str) -> str:
    done = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%T", "--jobs",
                           job_id], capture_output=True, text=True)
    return done.stdout.strip()


def wait_for(what: str, test, timeout: float = 240, poll: float = 0.3):
    deadline = time.monotonic() + timeout
    while not (value := test()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)
    return value


# --------------------------------------------------------------------------- no cluster needed


def test_dry_run_submits_nothing(tmp_path: Path, synth20: Path) -> None:
    spec = tiny_spec(tmp_path, synth20, name="dry", axes={"run.seed": [0, 1]},
                     resources={**RESOURCES, "nproc_per_node": 2})
    done = sweep(str(spec), "--launcher", "slurm", "--dry-run", "--max-parallel", "1",
                 "--set", "slurm.allow_local_paths=true")  # its folders are under /tmp
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"[dry-run] sbatch job array of 2 in {tmp_path}/runs/dry/slurm/%j: name=liss-dry "
            "nodes=1 tasks_per_node=2 cpus_per_task=1 mem_gb=1 timeout_min=30 "
            "slurm_array_parallelism=1") in done.stdout
    assert " -m liss train " in done.stdout and "run.name=dry-s1 >> " in done.stdout
    assert not (tmp_path / "runs").exists()


SINFO = """#!/bin/sh
# A stand-in for sinfo: the cluster's nodes as `NodeHostName|NodeAddr`
printf '%s\\n' {nodes}
"""


@pytest.mark.parametrize(("nodes", "refused"), [
    (["node7|10.1.2.3"], True),
    (["localhost|127.0.0.1", "node7|10.1.2.3"], True),
    (["localhost|127.0.0.1"], False),  # the test cluster: this host is the only node
    ([], True),  # sinfo cannot tell
])
def test_node_local_paths_are_refused_unless_the_cluster_is_this_host(
        tmp_path: Path, synth20: Path, monkeypatch: pytest.MonkeyPatch, nodes: list[str],
        refused: bool) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sinfo").write_text(SINFO.format(nodes=" ".join(f"'{n}'" for n in nodes)))
    (bindir / "sinfo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    spec = tiny_spec(tmp_path, synth20, name="where", resources=RESOURCES)
    done = sweep(str(spec), "--launcher", "slurm", "--dry-run")
    if not refused:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "[dry-run] sbatch job array of 1" in done.stdout
        return
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [e for e in done.stderr.splitlines() if e.startswith("liss sweep:")]
    # the first node-local path is named: the venv or the checkout when they are under /tmp
    # too (a CI clone may be), else the sweep's folder; its data root and the project's MLflow
    # store are under /tmp in any case, so at least two more are counted
    found = re.fullmatch(r"liss sweep: config error: (.+)='(.+)': is under /tmp, which is local "
                         r"to each node, and the jobs may run on other nodes \(and (\d+) more\): "
                         r".*slurm.allow_local_paths=true.*", line)
    assert found, line
    what, path, more = found.groups()
    assert Path(path).is_relative_to("/tmp") and int(more) >= 2
    if what.startswith("run.dir"):
        assert path == str(tmp_path / "runs" / "where")
    assert "[dry-run]" not in done.stdout


# --------------------------------------------------------------------------- on the cluster


@pytest.mark.slurm
@pytest.mark.slow
def test_job_array_sweep(slurm_cluster: Path, tmp_path: Path, synth20: Path) -> None:
    spec = tiny_spec(tmp_path, synth20, name="arr",
                     axes={"schedule.task_schedule": ["parallel", "liss"]},
                     points=[{"schedule.task_schedule": "liss",
                              "data.root": "no/such/dataset"}],
                     resources=RESOURCES)
    runs = tmp_path / "runs" / "arr"
    t0 = time.monotonic()
    done = sweep(str(spec), "--launcher", "slurm", "--max-parallel", "2", "--wait")
    print(f"job array sweep: {time.monotonic() - t0:.1f} s")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    bad = "arr-liss-no-such-dataset"
    ids = dict(re.findall(r"\n(arr-\S+) +\w+ +job (\d+_\d+)", out))
    assert sorted(ids) == ["arr-liss", bad, "arr-parallel"]
    assert len({i.split("_")[0] for i in ids.values()}) == 1, "one job array"
    for name in ("arr-parallel", "arr-liss"):
        assert re.search(rf"\n{name} +completed +job {ids[name]}, log "
                         rf"{runs / name / 'launch.log'}\n", out)
        assert (runs / name / "status.json").read_text().startswith(
            '{"status": "completed", "step": 4')
    bad_log = runs / bad / "launch.log"
    assert re.search(rf"\n{bad} +failed +job {ids[bad]}: {bad_log}\n", out)
    assert "dataset folder not found" in bad_log.read_text()

    status = sweep("status", str(spec))
    assert "states (slurm): squeue" in status.stdout
    assert re.search(rf"\n{bad} +failed +job {ids[bad]}: {bad_log}\n", status.stdout)
    assert len(re.findall(r" completed +job ", status.stdout)) == 2

    client = MlflowClient(f"sqlite:///{runs.parent / 'mlflow.db'}")  # the store of run.dir
    found = client.search_runs([client.get_experiment_by_name("liss").experiment_id])
    parent = next(r for r in found if r.data.tags.get("sweep_role") == "parent")
    children = {r.info.run_name: r for r in found if r is not parent}
    assert {"arr-parallel", "arr-liss"} <= set(children)
    assert {children[n].data.tags["mlflow.parentRunId"] for n in ("arr-parallel", "arr-liss")
            } == {parent.info.run_id}
    assert parent.info.status == "FAILED", "closed once every point ended, one failed"


@pytest.mark.slurm
@pytest.mark.slow
def test_two_tasks_are_ranks_0_and_1(slurm_cluster: Path, tmp_path: Path,
                                     synth20: Path) -> None:
    spec = tiny_spec(tmp_path, synth20, name="ddp",
                     resources={**RESOURCES, "nproc_per_node": 2})
    done = sweep(str(spec), "--launcher", "slurm", "--wait")
    run = tmp_path / "runs" / "ddp" / "ddp"
    assert done.returncode == 0, done.stdout + done.stderr + _tail(run / "launch.log")
    assert re.search(r"\nddp +completed +job \d+, log ", done.stdout)
    logs = {0: (run / "launch.log").read_text(), 1: (run / "launch.rank1.log").read_text()}
    for rank, text in logs.items():
        assert re.search(rf"==== liss sweep \(slurm\): job \d+ restart 0, rank {rank}/2 ", text)
    assert "run folder:" in logs[0] and "run folder:" not in logs[1], "rank 0 reports"
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    child = client.search_runs([client.get_experiment_by_name("liss").experiment_id],
                               filter_string="attributes.run_name = 'ddp'")[0]
    assert child.data.tags["world_size"] == "2"
    assert child.info.status == "FINISHED"


@pytest.mark.slurm
@pytest.mark.slow
def test_preemption_requeues_and_resumes(slurm_cluster: Path, tmp_path: Path,
                                         synth20: Path) -> None:
    """Two identical trainings in one array; the first is preempted mid-run the way submitit
    tests it (SIGTERM, then USR2), checkpoints, is requeued and resumes; both end alike."""
    steps = 30
    spec = tiny_spec(tmp_path, synth20, name="rq", resources=RESOURCES, overrides={
        "train.max_steps": steps, "train.ckpt_every": 5, "train.val_every": 10},
        points=[{"train.log_every": 10}, {"train.log_every": 5}])
    runs = tmp_path / "runs" / "rq"
    t0 = time.monotonic()
    done = sweep(str(spec), "--launcher", "slurm", "--max-parallel", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    job, twin_job = (re.search(rf"\n{name} +submitted +job (\S+),", done.stdout).group(1)
                     for name in ("rq-10", "rq-5"))
    run = runs / "rq-10"
    wait_for("the first checkpoint", lambda: (run / "checkpoints" / "step_5.pt").exists())
    for sig in ("TERM", "USR2"):  # what submitit's job._interrupt() sends for a preemption
        subprocess.run(["scancel", f"--signal={sig}", job], check=True)
    wait_for("the requeued job", lambda: squeue_state(job) == "PENDING")
    # SLURM holds a requeued job ~120 s before it may start again; start it now, but not in
    # the second of the requeue: slurmd refuses a launch whose credential is not newer (in
    # whole seconds) than the revocation of the old one ("Job credential revoked").
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}
    wait_for("the resumed job", lambda: squeue_state(job) in final, timeout=300)
    print(f"requeue round trip: {time.monotonic() - t0:.1f} s")

    status = sweep("status", str(spec)).stdout
    assert re.search(rf"\nrq-10 +completed +job {job}, log ", status), status
    log = (run / "launch.log").read_text()
    assert "liss: SIGUSR1 received" in log and log.count("received: finishing") == 1, (
        "the trainer got exactly one stop request")
    stopped = int(log.split("preempted at step ")[1].split(":")[0])
    assert 5 <= stopped < steps
    assert re.search(rf"==== liss sweep \(slurm\): job {job} restart 1, rank 0/1 ", log)
    assert f"resumed from {run}/checkpoints/step_{stopped}.pt at step {stopped}" in log
    submitit_log = (runs / "slurm" / job / f"{job}_0_log.err").read_text()
    assert "this job is preempted" in submitit_log

    wait_for("the uninterrupted twin", lambda: squeue_state(twin_job) in final)
    twin = runs / "rq-5"
    ends = {r: torch.load(r / "checkpoints" / "latest.pt", weights_only=True)
            for r in (run, twin)}
    for r in (run, twin):
        assert (r / "status.json").read_text().startswith(
            f'{{"status": "completed", "step": {steps}')
        assert ends[r]["step"] == steps
    assert "resumed from" not in (twin / "launch.log").read_text()
    for name, weights in ends[twin]["models"].items():
        for key, value in weights.items():
            assert torch.equal(ends[run]["models"][name][key], value), f"{name}.{key}"

    client = MlflowClient(f"sqlite:///{runs.parent / 'mlflow.db'}")  # the store of run.dir
    children = client.search_runs([client.get_experiment_by_name("liss").experiment_id],
                                  filter_string="attributes.run_name = 'rq-10'")
    assert len(children) == 1 and children[0].info.status == "FINISHED", (
        "the resumed job continues the same MLflow run")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return f"(no {path})"
