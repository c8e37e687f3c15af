"""Auxiliary tasks in their fixed priority order (spec §3): rotation, jigsaw, depth, gray."""

from __future__ import annotations

from liss.config import TASK_METRICS, TASK_NAMES
from liss.tasks.base import AuxTask, TaskInputs
from liss.tasks.depth import DepthTask
from liss.tasks.gray import GrayTask
from liss.tasks.jigsaw import JigsawTask
from liss.tasks.rotation import RotationTask

__all__ = ["AuxTask", "TaskInputs", "build_tasks"]


def build_tasks(names: list[str], gan_mode: str = "lsgan") -> list[AuxTask]:
    """Task objects for `names`, sorted by priority whatever order they were given in."""
    registry: dict[str, AuxTask] = {
        "rotation": RotationTask(),
        "jigsaw": JigsawTask(),
        "depth": DepthTask(),
        "gray": GrayTask(gan_mode),
    }
    assert tuple(registry) == TASK_NAMES
    assert all(task.metric == TASK_METRICS[name] for name, task in registry.items())
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown auxiliary task(s) {unknown}; known: {list(registry)}")
    return [registry[n] for n in TASK_NAMES if n in names]
