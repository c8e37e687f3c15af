"""SLURM launcher: the whole sweep as one submitit job array, one array task per point.

Each SLURM task (one per rank) runs `TrainerJob`, which exports the torch.distributed
environment from submitit's `TorchDistributedEnvironment` and runs the trainer as a child
process, so the trainer's own signal handling and submitit's never compete in one process.

Preemption and time limits. SLURM signals every process of a job step, the trainer child
included: `--signal=USR2@<signal_delay_s>` before the time limit, SIGTERM on preemption or
`scancel` (submitit's own preemption test sends SIGTERM then USR2). The trainer exits at once
on a second signal, so it must see exactly one. The child therefore starts with SIGTERM and
SIGUSR2 blocked, and the wrapper is the one that tells it to stop, with SIGUSR1, once:
- on SIGTERM (preemption, scancel): forward, let the trainer checkpoint and exit 75; the
  callable returns 75 ("preempted"; re-running the sweep resumes it);
- on USR2, through submitit's handler calling `checkpoint()` (rank 0 only): forward unless
  already done, wait for the trainer's checkpoint, and return a DelayedSubmission of the
  same job; submitit then requeues it (`scontrol requeue`) and the requeued job resumes
  from the run folder (`train.resume=auto`).
Other ranks stop with rank 0: the trainer all-reduces the preemption flag every step.

Shared paths. A job runs on a compute node with this machine's python, working directory,
base config, data roots, run folders (submitit's folder is inside them) and SQLite store, at
the same paths. `check_shared_paths` refuses, before anything is submitted, any of them under a
node-local temporary folder (/tmp, /var/tmp, /dev/shm, $TMPDIR), unless every node SLURM
lists is this machine, or the spec says `slurm.allow_local_paths: true`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from launch.common import (
    LIVE_STATES,
    LaunchError,
    Submission,
    child_env,
    log_path,
    nproc_per_node,
    read_status,
    set_aside,
    trainer_args,
)
from launch.sweep import Point, SweepSpec, sweep_dir, tracking_uri
from liss.config import ConfigError
from liss.train.signals import EXIT_PREEMPTED

JOB_FOLDER = "slurm/%j"  # submitit's folder for pickles and wrapper logs, in the sweep folder
STOP_SIGNAL = signal.SIGUSR1  # the one signal the trainer child is left to receive
BLOCKED = {signal.SIGTERM, signal.SIGUSR2}  # what SLURM sends the whole step
STATUS_SOURCE = ("squeue for jobs SLURM still lists, else submitit's result file and the "
                 "run folder (sacct is not used)")
POLL_S = 0.5
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm")  # and $TMPDIR: each node has its own
SINFO_TIMEOUT_S = 30

logger = logging.getLogger(__name__)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise LaunchError("the slurm launcher needs submitit: pip install 'submitit>=1.5'"
                          ) from None
    return submitit


def executor_parameters(spec: SweepSpec, max_parallel: int) -> dict[str, Any]:
    """AutoExecutor parameters from the spec: generic names for resources, `slurm_*` for the
    SLURM-only settings. One task per rank: `tasks_per_node` = GPUs (or nproc) per node."""
    r, s = spec.resources, spec.slurm
    params: dict[str, Any] = {
        "name": f"liss-{spec.name}",
        "nodes": r.get("nodes", 1),
        "tasks_per_node": nproc_per_node(spec),
        "gpus_per_node": r.get("gpus_per_node") or None,
        "cpus_per_task": r.get("cpus_per_task", 1),
        "mem_gb": r.get("mem_gb"),
        "timeout_min": r.get("timeout_min", 60),
        "slurm_array_parallelism": max_parallel,
    }
    for key in ("partition", "account", "qos", "constraint", "additional_parameters",
                "setup", "signal_delay_s"):
        params[f"slurm_{key}"] = s.get(key)
    return {k: v for k, v in params.items() if v is not None}


# --------------------------------------------------------------------------- shared paths


def shared_paths(spec: SweepSpec, points: list[Point]) -> list[tuple[str, Path]]:
    """(what, path) for everything a job reads or writes at this machine's paths."""
    found = [("python (the venv jobs run)", Path(sys.executable)),
             ("working directory", Path.cwd()),
             ("run.dir (with submitit's slurm/ folder)", sweep_dir(spec))]
    if spec.base is not None:
        found.append(("base config", spec.base))
    uri = tracking_uri(spec)
    store = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if store is not None and sweep_dir(spec).absolute() not in store.absolute().parents:
        found.append(("tracking.uri", store))
    for point in points:
        found.append((f"data.root (point {point.name})", Path(point.config.data.root)))
    out: dict[Path, str] = {}
    for what, path in found:
        out.setdefault(path.absolute(), what)
    return [(what, path) for path, what in out.items()]


def node_local_root(path: Path) -> str | None:
    """The node-local folder (/tmp, ...) `path` is in, as given or through symlinks."""
    roots = [*NODE_LOCAL, *filter(None, [os.environ.get("TMPDIR")])]
    for candidate in {path.absolute(), path.resolve()}:
        for root in roots:
            if any(candidate == r or r in candidate.parents
                   for r in {Path(root), Path(root).resolve()}):
                return root
    return None


def _is_this_host(name: str) -> bool:
    if name in {"localhost", socket.gethostname(), socket.getfqdn()}:
        return True
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo(name, None)}
        own = set(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                                   or a in own for a in addresses)


def cluster_is_this_host(partition: str | None) -> bool:
    """Whether every node `sinfo` lists (in `partition`, if one is set) is this machine, by
    its NodeHostName or NodeAddr; False when sinfo cannot tell."""
    cmd = ["sinfo", "--noheader", "--Node", "--format=%n|%o",
           *([f"--partition={partition}"] if partition else [])]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SINFO_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    nodes = [line.split("|") for line in done.stdout.split()]
    return done.returncode == 0 and bool(nodes) and all(
        any(_is_this_host(n) for n in node) for node in nodes)


def check_shared_paths(spec: SweepSpec, points: list[Point]) -> None:
    """Refuse (ConfigError, nothing submitted) a path under a node-local folder when the jobs
    may run on another node: its files would not be there, or would be lost with the node."""
    allow = spec.slurm.get("allow_local_paths", False)
    if not isinstance(allow, bool):
        raise ConfigError("sweep.slurm.allow_local_paths", allow, "must be true or false")
    if allow:
        return
    local = [(what, path, root) for what, path in shared_paths(spec, points)
             if (root := node_local_root(path)) is not None]
    if not local or cluster_is_this_host(spec.slurm.get("partition")):
        return
    what, path, root = local[0]
    more = f" (and {len(local) - 1} more)" if len(local) > 1 else ""
    raise ConfigError(what, str(path), f"is under {root}, which is local to each node, and the "
                      f"jobs may run on other nodes{more}: put it on a file system every node "
                      "mounts at the same path, or set slurm.allow_local_paths=true (e.g. --set "
                      "slurm.allow_local_paths=true) if they all see it")


# --------------------------------------------------------------------------- launcher


def launch(spec: SweepSpec, points: list[Point], *, parent_run_id: str | None,
           dry_run: bool, max_parallel: int | None, force: bool) -> list[Submission]:
    """Submit the points as one job array; returns at once with the job ids."""
    check_shared_paths(spec, points)
    params = executor_parameters(spec, max(1, max_parallel or len(points)))
    folder = (sweep_dir(spec) / JOB_FOLDER).absolute()
    env = child_env(spec, parent_run_id)
    stop_timeout = max(10, int(spec.slurm.get("signal_delay_s", 90)) - 20)
    jobs = [TrainerJob(p.name, trainer_args(spec, p), log_path(p), Path.cwd(), env,
                       stop_timeout) for p in points]
    if dry_run:
        print(f"[dry-run] sbatch job array of {len(jobs)} in {folder}: "
              + " ".join(f"{k}={v}" for k, v in params.items()))
        for job in jobs:
            print(f"[dry-run] {job.name}: {shlex.join(job.command())} >> {job.log} 2>&1")
        return [Submission(j.name, "dry-run", str(j.log)) for j in jobs]

    submitit = _submitit()
    if force:
        for p in points:
            if (old := set_aside(p)) is not None:
                print(f"[slurm] --force: moved the old run folder of {p.name} to {old}")
    for job in jobs:
        job.log.parent.mkdir(parents=True, exist_ok=True)
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                         slurm_max_num_timeout=spec.slurm.get(
                                             "max_num_timeout", 3))
        executor.update_parameters(**params)
        submitted = executor.submit_array(jobs)
    except (RuntimeError, ValueError, NameError, subprocess.CalledProcessError) as e:
        raise LaunchError(f"cannot submit to SLURM, nothing was submitted: {e}") from e
    return [Submission(j.name, "submitted", f"job {s.job_id}, log {j.log}", s.job_id)
            for j, s in zip(jobs, submitted, strict=True)]


class TrainerJob:
    """The submitted callable (a submitit Checkpointable by duck typing: it has
    `checkpoint`, so submitit needs no import here until the job runs)."""

    def __init__(self, name: str, args: list[str], log: Path, cwd: Path,
                 env: dict[str, str], stop_timeout_s: int):
        self.name, self.args, self.log, self.cwd = name, args, log, cwd
        self.env, self.stop_timeout_s = env, stop_timeout_s
        self._reset()

    def _reset(self) -> None:
        self._child: subprocess.Popen | None = None
        self._exit: threading.Event = threading.Event()
        self._stopping = False

    def __getstate__(self) -> dict[str, Any]:  # the child process stays behind
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def command(self) -> list[str]:
        return [sys.executable, *self.args]

    def __call__(self) -> int:
        """Run the trainer for this task's rank; 0 = completed, 75 = preempted (checkpoint
        written); anything else raises with the log path."""
        submitit = _submitit()
        dist = submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True)  # ranks pick cuda:LOCAL_RANK
        env = {**os.environ, **self.env}
        env.setdefault("OMP_NUM_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        log = self.log if dist.rank == 0 else self.log.with_name(f"launch.rank{dist.rank}.log")
        with log.open("a") as out:
            out.write(f"==== liss sweep (slurm): job {submitit.JobEnvironment().job_id} "
                      f"restart {os.environ.get('SLURM_RESTART_COUNT', '0')}, rank "
                      f"{dist.rank}/{dist.world_size} on {os.uname().nodename}, "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(self.command())}\n")
            out.flush()
            old = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)  # inherited by the child
            try:
                self._child = subprocess.Popen(self.command(), stdout=out,
                                               stderr=subprocess.STDOUT, env=env, cwd=self.cwd)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        # Reaped by a thread; this thread and the signal handlers that run on it only
        # poll an Event's flag, so a handler never waits on a lock its own frame holds.
        threading.Thread(target=self._reap, daemon=True).start()
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        while not self._exit.is_set():
            time.sleep(POLL_S)
        code = self._child.returncode
        if code in (0, EXIT_PREEMPTED):
            return code
        raise RuntimeError(f"{self.name}: the trainer exited with {code}; log: {log}")

    def _reap(self) -> None:
        self._child.wait()
        self._exit.set()

    def _stop(self) -> None:
        """Ask the trainer, once, to checkpoint and exit."""
        if not self._stopping and self._child is not None and self._child.returncode is None:
            self._stopping = True
            self._child.send_signal(STOP_SIGNAL)

    def checkpoint(self) -> Any:
        """Called by submitit's USR2 handler: stop the trainer at a checkpoint, then hand
        submitit this same job to requeue. A trainer that does not stop in time is killed;
        the requeued job resumes from its last checkpoint on disk."""
        self._stop()
        deadline = time.monotonic() + self.stop_timeout_s
        while self._child is not None and not self._exit.is_set():
            if time.monotonic() > deadline:
                self._child.kill()
                break
            time.sleep(POLL_S)
        return _submitit().helpers.DelayedSubmission(self)


# --------------------------------------------------------------------------- status


def status(spec: SweepSpec, points: list[Point],
           submitted: dict[str, Submission]) -> dict[str, Submission]:
    """Each submitted point's state: squeue for jobs SLURM still lists (pending, running,
    requeued), then the submitit result of task 0 (completed, preempted, failed), then
    squeue's terminal state (timeout, cancelled...) for jobs that left no result. sacct is
    not used, so this works on clusters without accounting."""
    submitit = _submitit()
    folder = (sweep_dir(spec) / JOB_FOLDER).absolute()
    queue = _squeue([s.job_id for s in submitted.values() if s.job_id])
    out = {}
    for point in points:
        sub = submitted.get(point.name)
        if sub is None or not sub.job_id:
            continue
        job = submitit.SlurmJob(folder=folder, job_id=sub.job_id)
        slurm_state = queue.get(sub.job_id, "")
        out[point.name] = Submission(point.name, *_job_state(job, slurm_state, point),
                                     sub.job_id)
    return out


def _job_state(job: Any, slurm_state: str, point: Point) -> tuple[str, str]:
    log = log_path(point)
    if slurm_state.lower() in LIVE_STATES:
        return slurm_state.lower(), f"job {job.job_id}, log {log}"
    if job.paths.result_pickle.exists():
        if job.exception() is not None:
            return "failed", f"job {job.job_id}: {log}"
        code = job.result()
        return ("completed" if code == 0 else "preempted"), f"job {job.job_id}, log {log}"
    if slurm_state:
        return slurm_state.lower(), f"job {job.job_id}: {job.paths.stderr}"
    written = read_status(point).get("status")  # the trainer's own word, if any
    return (written or "unknown"), f"job {job.job_id} (not in squeue, no result): {log}"


def _squeue(job_ids: list[str]) -> dict[str, str]:
    """job id -> SLURM state for the jobs squeue still knows (one line per array task)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    done = subprocess.run(["squeue", "--noheader", "--array", "--states=all",
                           "--format=%i|%T", "--jobs", ",".join(arrays)],
                          capture_output=True, text=True)
    if done.returncode and "Invalid job id" not in done.stderr:  # all purged: not an error
        logger.warning("squeue failed (%s): states come from the job results only",
                       done.stderr.strip())
    states = {}
    for line in done.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        states[job] = state
    return states

