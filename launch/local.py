"""Local launcher: each point is a `torchrun` on this machine, one at a time or N at a time.

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

MAX_RESUMES = 3  # a point preempted more often than this is reported as preempted
POLL_S = 0.5
STOP_TIMEOUT_S = 120  # after Ctrl-C: time for the trainers to checkpoint before SIGKILL


def command(spec: SweepSpec, point: Point) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc_per_node=N -m liss train ...`;
    `--standalone` gives each point its own rendezvous port, so points can run side by side."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc_per_node(spec)}", *trainer_args(spec, point)]


@dataclass
class _Run:
    point: Point
    cmd: list[str]
    attempt: int = 0
    proc: subprocess.Popen | None = None
    log: IO[str] | None = None
    started: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        self.attempt += 1
        path = log_path(self.point)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log = path.open("a")
        self.log.write(f"==== liss sweep (local): attempt {self.attempt}, "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(self.cmd)}\n")
        self.log.flush()
        self.started = time.time()
        # A session of its own: Ctrl-C reaches the launcher only, which then asks each
        # torchrun (and through it the trainers) to checkpoint and stop.
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        print(f"[local] started {self.point.name} (pid {self.proc.pid}, attempt "
              f"{self.attempt}): log {path}", flush=True)

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
           dry_run: bool, max_parallel: int, force: bool) -> list[Submission]:
    """Run every point to the end; returns each point's final state."""
    env = {**os.environ, **child_env(spec, parent_run_id)}
    runs = [_Run(p, command(spec, p)) for p in points]
    if dry_run:
        exports = " ".join(f"{k}={v}" for k, v in child_env(spec, parent_run_id).items())
        for r in runs:
            print(f"[dry-run] {r.point.name}: {exports} {shlex.join(r.cmd)} "
                  f">> {log_path(r.point)} 2>&1")
        return [Submission(r.point.name, "dry-run", str(log_path(r.point))) for r in runs]
    if force:
        for r in runs:
            if (old := set_aside(r.point)) is not None:
                print(f"[local] --force: moved the old run folder of {r.point.name} to {old}")
    return _run_all(runs, env, max(1, max_parallel))


def _run_all(runs: list[_Run], env: dict[str, str], max_parallel: int) -> list[Submission]:
    queue, running, done = deque(runs), [], {}
    try:
        while queue or running:
            while queue and len(running) < max_parallel:
                run = queue.popleft()
                run.start(env)
                running.append(run)
            time.sleep(POLL_S)
            for run in [r for r in running if r.proc.poll() is not None]:
                running.remove(run)
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
