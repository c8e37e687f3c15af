"""Local launcher: each point is a `torchrun` on this machine, one at a time or N at a time.

On a machine with GPUs, each running point gets K of them to itself (`--gpus-per-point`, else
`resources.gpus_per_node`, else 1) as its CUDA_VISIBLE_DEVICES, and torchrun one process per
GPU; the visible GPUs are cut into disjoint slices of K, as many points run at once as there
are slices (or `--max-parallel`), and a point that ends hands its slice to the next. Without
GPUs the points run on the CPU with `resources.nproc_per_node` processes (else
`gpus_per_node`, else 1), one at a time unless `--max-parallel`.

torchrun turns every worker failure into its own exit code 1, so a point's outcome is read
from the `status.json` its trainer writes (completed / preempted) during this attempt, not
from torchrun's exit code. A preempted point (the trainer checkpointed and exited 75) is
resumed from its checkpoint up to MAX_RESUMES times.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from launch.common import (
    Submission,
    child_env,
    log_path,
    nproc_per_node,
    read_status,
    set_aside,
    trainer_args,
)
from launch.sweep import Point, SweepSpec
from liss.config import ConfigError

MAX_RESUMES = 3  # a point preempted more often than this is reported as preempted
POLL_S = 0.5
STOP_TIMEOUT_S = 120  # after Ctrl-C: time for the trainers to checkpoint before SIGKILL
TORCHRUN = ("-m", "torch.distributed.run")  # after sys.executable (tests put a stand-in here)
GPUS_ENV = "CUDA_VISIBLE_DEVICES"


def visible_gpus() -> list[str]:
    """The GPUs points may use, as CUDA_VISIBLE_DEVICES entries: those CUDA_VISIBLE_DEVICES
    lists when it is set (indices, UUIDs or MIG ids, as written; CUDA ignores everything from
    an invalid entry such as -1 on), else 0..N-1 for the N devices torch sees. The points run
    this same torch, so a GPU it cannot use (a CPU build, no driver) is no GPU for them."""
    listed = os.environ.get(GPUS_ENV)
    if listed is None:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    gpus = []
    for entry in (e.strip() for e in listed.split(",")):
        if not entry or entry.startswith("-"):
            break
        gpus.append(entry)
    return gpus


@dataclass(frozen=True)
class Plan:
    """How points share this machine: processes per point, points at once, and the
    CUDA_VISIBLE_DEVICES slices they take turns on, one per running point ("": no GPU;
    none at all: no GPUs here, the variable is left as it is)."""

    nproc: int
    parallel: int
    slices: tuple[str, ...] = ()


def plan(spec: SweepSpec, gpus: list[str], max_parallel: int | None) -> Plan:
    """K = `resources.gpus_per_node` (what `--gpus-per-point` sets), else 1, GPUs per point:
    the visible GPUs cut into disjoint slices of K, one running point per slice."""
    if not gpus:
        return Plan(nproc_per_node(spec), max(1, max_parallel or 1))
    k = spec.resources.get("gpus_per_node")
    if k == 0:  # asked for CPU points: hide the GPUs from them
        parallel = max(1, max_parallel or 1)
        return Plan(nproc_per_node(spec), parallel, ("",) * parallel)
    k = k or 1
    if k > len(gpus):
        raise ConfigError("resources.gpus_per_node (--gpus-per-point)", k,
                          f"more than the {len(gpus)} GPUs visible here ({','.join(gpus)})")
    slices = tuple(",".join(gpus[i:i + k]) for i in range(0, len(gpus) - k + 1, k))
    parallel = min(max_parallel or len(slices), len(slices))
    return Plan(k, parallel, slices[:parallel])


def command(spec: SweepSpec, point: Point, nproc: int) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc_per_node=N -m liss train ...`;
    `--standalone` gives each point its own rendezvous port, so points can run side by side."""
    return [sys.executable, *TORCHRUN, "--standalone", f"--nproc_per_node={nproc}",
            *trainer_args(spec, point)]


@dataclass
class _Run:
    point: Point
    cmd: list[str]
    attempt: int = 0
    proc: subprocess.Popen | None = None
    log: IO[str] | None = None
    started: float = 0.0
    gpus: str | None = None  # its CUDA_VISIBLE_DEVICES while it runs (None: left alone)

    def start(self, env: dict[str, str], gpus: str | None) -> None:
        self.attempt += 1
        self.gpus = gpus
        if gpus is not None:
            env = {**env, GPUS_ENV: gpus}
        path = log_path(self.point)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log = path.open("a")
        cuda = "" if gpus is None else f"{GPUS_ENV}={gpus} "
        self.log.write(f"==== liss sweep (local): attempt {self.attempt}, "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {cuda}{shlex.join(self.cmd)}\n")
        self.log.flush()
        self.started = time.time()
        # A session of its own: Ctrl-C reaches the launcher only, which then asks each
        # torchrun (and through it the trainers) to checkpoint and stop.
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        on = "" if gpus is None else f", GPUs {gpus}" if gpus else ", no GPU"
        print(f"[local] started {self.point.name} (pid {self.proc.pid}, attempt "
              f"{self.attempt}{on}): log {path}", flush=True)

    def outcome(self) -> str:
        """completed | preempted | failed, once the process has exited."""
        assert self.proc is not None and self.log is not None
        self.log.close()
        path = Path(self.point.config.run_dir) / "status.json"
        fresh = path.exists() and path.stat().st_mtime >= self.started  # this attempt's
        status = read_status(self.point).get("status") if fresh else None
        if status == "completed" and self.proc.returncode == 0:
            return "completed"
        return "preempted" if status == "preempted" else "failed"


def launch(spec: SweepSpec, points: list[Point], *, parent_run_id: str | None,
           dry_run: bool, max_parallel: int | None, force: bool) -> list[Submission]:
    """Run every point to the end; returns each point's final state."""
    gpus = visible_gpus()
    how = plan(spec, gpus, max_parallel)
    env = {**os.environ, **child_env(spec, parent_run_id)}
    runs = [_Run(p, command(spec, p, how.nproc)) for p in points]
    if dry_run:
        if gpus:
            print(f"[dry-run] GPUs {','.join(gpus)}: {how.parallel} point(s) at once on "
                  f"{' | '.join(s or 'no GPU' for s in how.slices)}; a point that ends hands "
                  "its slice to the next", file=sys.stderr)
        exports = " ".join(f"{k}={v}" for k, v in child_env(spec, parent_run_id).items())
        for i, r in enumerate(runs):
            cuda = "" if not how.slices else (
                f"{GPUS_ENV}={how.slices[i]} " if i < how.parallel else
                f"{GPUS_ENV}=<the first slice freed> ")
            print(f"[dry-run] {r.point.name}: {cuda}{exports} {shlex.join(r.cmd)} "
                  f">> {log_path(r.point)} 2>&1")
        return [Submission(r.point.name, "dry-run", str(log_path(r.point))) for r in runs]
    if force:
        for r in runs:
            if (old := set_aside(r.point)) is not None:
                print(f"[local] --force: moved the old run folder of {r.point.name} to {old}")
    return _run_all(runs, env, how)


def _run_all(runs: list[_Run], env: dict[str, str], how: Plan) -> list[Submission]:
    queue, running, done = deque(runs), [], {}
    free = deque(how.slices)  # each running point holds one; it is handed on when it ends
    try:
        while queue or running:
            while queue and len(running) < how.parallel:
                run = queue.popleft()
                run.start(env, free.popleft() if how.slices else None)
                running.append(run)
            time.sleep(POLL_S)
            for run in [r for r in running if r.proc.poll() is not None]:
                running.remove(run)
                if how.slices:
                    free.append(run.gpus)
                state = run.outcome()
                if state == "preempted" and run.attempt <= MAX_RESUMES:
                    print(f"[local] {run.point.name}: preempted, resuming from its checkpoint",
                          flush=True)
                    queue.appendleft(run)
                    continue
                done[run.point.name] = _report(run, state)
    except KeyboardInterrupt:
        print("\n[local] interrupted: asking the running points to checkpoint and stop",
              flush=True)
        _stop(running)
        for run in running:
            done[run.point.name] = _report(run, run.outcome())
        for run in queue:  # waiting to start, or to resume after a preemption
            done[run.point.name] = (_report(run, "preempted") if run.attempt else
                                    Submission(run.point.name, "not started", ""))
    return [done[r.point.name] for r in runs]


def _report(run: _Run, state: str) -> Submission:
    elapsed = time.time() - run.started
    code = run.proc.returncode
    detail = f"torchrun exit {code}, {elapsed:.0f} s" + (f", {run.attempt} attempts"
                                                          if run.attempt > 1 else "")
    print(f"[local] {run.point.name}: {state} ({detail})"
          + (f": see {log_path(run.point)}" if state == "failed" else ""), flush=True)
    where = str(log_path(run.point))
    return Submission(run.point.name, state, f"torchrun exit {code}: {where}"
                      if state == "failed" else where)


def _stop(running: list[_Run]) -> None:
    """SIGTERM to each torchrun (which passes it to its workers: they checkpoint and exit),
    then SIGKILL to whatever is left of the group after STOP_TIMEOUT_S."""
    for run in running:
        run.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for run in running:
        try:
            run.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
