"""What every launcher shares: the submission record, how a point becomes a trainer command,
where its log and run folder are.

A launcher is a module `launch.<name>` with
`launch(spec, points, *, parent_run_id, dry_run, max_parallel, force) -> list[Submission]`
(`max_parallel` None: the launcher's own default) and, when it can report on what it
submitted, `status(spec, points, submitted: dict[name, Submission]) -> dict[name, Submission]`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from launch.sweep import Point, SweepSpec, sweep_dir, sweep_id

PARENT_RUN_ENV = "LISS_PARENT_RUN_ID"  # read by liss.tracking: the run becomes a child
SWEEP_ID_ENV = "LISS_SWEEP_ID"  # read by liss.tracking: tagged as sweep_id
LOG_NAME = "launch.log"  # the trainer's stdout+stderr, in its run folder
RECORD_NAME = "submissions.json"  # in the sweep folder: what `liss sweep status` reads
# States of a point that is still on its way (a launcher's `status` reports these).
LIVE_STATES = {"submitted", "pending", "configuring", "running", "completing", "requeued",
               "requeue_hold", "requeue_fed", "resizing", "suspended", "signaling",
               "stage_out", "stopped"}


class LaunchError(RuntimeError):
    """The launcher cannot do its work (missing tool, scheduler refused); nothing or only
    part of the sweep was submitted, and the message says which."""


@dataclass(frozen=True)
class Submission:
    """One point as submitted: where it runs and how to watch it."""

    name: str
    state: str  # submitted | skipped (finished) | dry-run | running | completed | failed ...
    where: str  # job id, pod name, PID, log path
    job_id: str = ""  # the scheduler's id, for `liss sweep status` (empty for local runs)



def run_status(point: Point) -> str | None:
    """`status` written by the trainer into the run folder (completed / preempted), if any."""
    return read_status(point).get("status")


def read_status(point: Point) -> dict:
    """The trainer's `status.json` (status, step, run_id), or {} when there is none."""
    path = Path(point.config.run_dir) / "status.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_finished(point: Point) -> bool:
    return run_status(point) == "completed"


def log_path(point: Point) -> Path:
    return (Path(point.config.run_dir) / LOG_NAME).absolute()


def trainer_args(spec: SweepSpec, point: Point) -> list[str]:
    """`-m liss train <base> key=value...`: the arguments after the python executable."""
    base = [str(spec.base)] if spec.base else []
    return ["-m", "liss", "train", *base, *point.override_args()]


def nproc_per_node(spec: SweepSpec) -> int:
    """Processes (ranks) per node: one per GPU, else `nproc_per_node`, else 1."""
    r = spec.resources
    return int(r.get("nproc_per_node") or r.get("gpus_per_node") or 1)


def child_env(spec: SweepSpec, parent_run_id: str | None) -> dict[str, str]:
    """What a point's trainer needs in its environment to join the sweep's MLflow parent."""
    env = {SWEEP_ID_ENV: sweep_id(spec)}
    if parent_run_id:
        env[PARENT_RUN_ENV] = parent_run_id
    return env


def set_aside(point: Point) -> Path | None:
    """`--force`: move a point's old run folder out of the way (kept, never deleted) so the
    point starts from scratch instead of resuming its checkpoints."""
    folder = Path(point.config.run_dir)
    if not folder.exists():
        return None
    target = folder.with_name(f"{folder.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(folder, target)
    return target


def record_path(spec: SweepSpec) -> Path:
    return sweep_dir(spec) / RECORD_NAME


def save_record(spec: SweepSpec, launcher: str, submissions: list[Submission]) -> None:
    """Merge these submissions into the sweep's record (points not in them are kept)."""
    path = record_path(spec)
    _, known = load_record(spec)
    known.update({s.name: s for s in submissions})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"launcher": launcher,
                               "points": {k: asdict(v) for k, v in known.items()}}, indent=1))
    os.replace(tmp, path)


def load_record(spec: SweepSpec) -> tuple[str | None, dict[str, Submission]]:
    """(launcher, submissions by point name) of the last `liss sweep` of this spec."""
    try:
        data = json.loads(record_path(spec).read_text())
        return data["launcher"], {k: Submission(**v) for k, v in data["points"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}
