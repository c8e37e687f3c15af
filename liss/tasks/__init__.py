"""Auxiliary tasks in their fixed priority order (spec §3): rotation, jigsaw, depth, gray."""

from __future__ import annotations

from liss.tasks.base import AuxTask, TaskInputs
from liss.tasks.depth import DepthTask
from liss.tasks.gray import GrayTask
from liss.tasks.jigsaw import JigsawTask
from liss.tasks.rotation import RotationTask
from liss.taskspec import specs_of

__all__ = ["TASK_CLASSES", "AuxTask", "TaskInputs", "build_tasks"]

# task name -> its class; one entry per `liss.taskspec.TASKS` entry
TASK_CLASSES: dict[str, type[AuxTask]] = {
    cls.spec.name: cls for cls in (RotationTask, JigsawTask, DepthTask, GrayTask)}


def build_tasks(names: list[str], gan_mode: str = "lsgan") -> list[AuxTask]:
    """Task objects for `names`, sorted by priority whatever order they were given in."""
    return [TASK_CLASSES[s.name](gan_mode) for s in specs_of(names)]
