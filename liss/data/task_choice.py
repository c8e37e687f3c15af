"""Which auxiliary tasks a run trains on this dataset: `tasks.auxiliary_tasks=auto` resolved,
an explicit depth task checked against the maps that exist.

Why here and not in the config: only the dataset knows whether it has depth maps. A
horse2zebra-style folder has none, and a depth task without maps would fail on every image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from liss.config import Config, ConfigError
from liss.data.layout import DOMAINS, Split, depth_path, depth_stems
from liss.taskspec import auto_tasks, needs_depth

FIX = "liss data depth {root} --model FILE"  # docs/data.md, "Computing depth maps"


@dataclass(frozen=True)
class TaskChoice:
    """The tasks to train, and the one line the run prints about why."""

    names: list[str]
    reason: str


def images_without_depth(listed: dict[str, Split]) -> tuple[list[Path], int]:
    """The train and val images that have no depth map, and how many images there are."""
    images = [f for split in ("train", "val") for d in DOMAINS for f in listed[split][d]]
    maps = {folder: depth_stems(folder) for folder in {f.parent for f in images}}
    return [f for f in images if f.stem not in maps[f.parent]], len(images)


def choose_tasks(cfg: Config, listed: dict[str, Split]) -> TaskChoice:
    """`auto`: rotation, jigsaw, gray, plus depth when every train/val image has its map.
    An explicit list is kept; with depth in it and maps missing, a one-line ConfigError
    (unless `data.on_bad_file=skip` may leave those images out and some remain)."""
    requested, root = cfg.tasks.auxiliary_tasks, cfg.data.root
    if not cfg.tasks.is_auto and not needs_depth(requested):
        return TaskChoice(requested, "as configured")
    lacking, total = images_without_depth(listed)
    first = f"first: {depth_path(lacking[0])}" if lacking else ""
    if cfg.tasks.is_auto:
        if not lacking:
            return TaskChoice(auto_tasks(with_depth=True),
                              f"auto: every train/val image has a depth map ({total})")
        return TaskChoice(auto_tasks(with_depth=False), f"auto: no depth task, {len(lacking)} "
                          f"of {total} train/val images have no depth map ({first}); "
                          f"compute them with `{FIX.format(root=root)}`")
    if lacking and not _skip_leaves_some(cfg, listed, set(lacking)):
        raise ConfigError("tasks.auxiliary_tasks", requested, f"the depth task needs a map per "
                          f"image, but {len(lacking)} of {total} train/val images have none "
                          f"({first}); drop the task (tasks.auxiliary_tasks=auto adds it only "
                          f"when every map is there) or compute the maps: "
                          f"{FIX.format(root=root)}")
    return TaskChoice(requested, "as configured" + (
        f"; {len(lacking)} images without a depth map are skipped" if lacking else ""))


def _skip_leaves_some(cfg: Config, listed: dict[str, Split], lacking: set[Path]) -> bool:
    """With `data.on_bad_file=skip`, whether every domain keeps a train image with a map."""
    return cfg.data.on_bad_file == "skip" and all(
        any(f not in lacking for f in listed["train"][d]) for d in DOMAINS)
