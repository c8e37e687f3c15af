"""What every launcher shares: the submission record and how a point becomes a command."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from launch.sweep import Point

PARENT_RUN_ENV = "LISS_PARENT_RUN_ID"  # read by liss.tracking: the run becomes a child
SWEEP_ID_ENV = "LISS_SWEEP_ID"  # read by liss.tracking: tagged as sweep_id


@dataclass(frozen=True)
class Submission:
    """One point as submitted: where it runs and how to watch it."""

    name: str
    state: str  # submitted | skipped (finished) | dry-run | running | completed | failed ...
    where: str  # job id, pod name, PID, log path


def run_status(point: Point) -> str | None:
    """`status` written by the trainer into the run folder (completed / preempted), if any."""
    path = Path(point.config.run_dir) / "status.json"
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError):
        return None


def is_finished(point: Point) -> bool:
    return run_status(point) == "completed"
