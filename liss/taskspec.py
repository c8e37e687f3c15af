"""The auxiliary tasks' facts, in one torch-free place: every other module reads them here.

A `TaskSpec` says what the config, the schedule, the reports and the optimizer need to know
about a task without building it: its config keys, what its schedule threshold reads, its
chance level and how reports name it. `TASKS` lists them in the fixed priority order of
spec §3 (rotation, jigsaw, depth, gray), the order tasks are run, listed and switched in.
The torch side (`liss.tasks`) holds one `AuxTask` class per spec.

Config keys follow the original's names: the weight `loss.<lambda_key>` (`lambda_R`), the
heads' learning rate `optim.lr_<name>`, the threshold `schedule.<name>_<metric>_threshold`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Metric = Literal["acc", "loss"]

N_ROTATIONS = 4  # 0°, 90°, 180°, 270°
N_PERMUTATIONS = 64  # jigsaw permutations of the 3x3 tiles


@dataclass(frozen=True)
class TaskSpec:
    """One auxiliary task's facts."""

    name: str  # in tasks.auxiliary_tasks, and the generators' head name
    metric: Metric  # what the threshold reads: accuracy passes above it, loss below it
    lambda_key: str  # LossConfig field weighting the task's loss
    label: str  # the validation metric in reports, e.g. "rotation accuracy"
    short: str  # the task in narrow table columns and phase labels, e.g. "rot"
    classes: int = 0  # classification tasks: how many classes (0: not a classifier)
    has_discriminator: bool = False  # adversarial loss, with a discriminator per domain
    needs_depth: bool = False  # batches must carry depth maps

    @property
    def lr_key(self) -> str:
        """OptimConfig field: the learning rate of the task's heads (0 = optim.lr)."""
        return f"lr_{self.name}"

    @property
    def threshold_key(self) -> str:
        """ScheduleConfig field: when the schedule considers the task learned."""
        return f"{self.name}_{self.metric}_threshold"

    @property
    def val_metric(self) -> str:
        """The metric the threshold reads, logged per domain as `val/<A|B>/<val_metric>`."""
        return f"{self.name}_{self.metric}"

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "acc"

    @property
    def chance(self) -> float | None:
        """The accuracy of guessing uniformly (None for tasks scored by a loss)."""
        return 1 / self.classes if self.classes else None


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("rotation", "acc", "lambda_R", "rotation accuracy", "rot", classes=N_ROTATIONS),
    TaskSpec("jigsaw", "acc", "lambda_J", "jigsaw accuracy", "jig", classes=N_PERMUTATIONS),
    TaskSpec("depth", "loss", "lambda_D", "depth L1", "depth", needs_depth=True),
    TaskSpec("gray", "loss", "lambda_G", "gray loss", "gray", has_discriminator=True),
)
TASK_NAMES: tuple[str, ...] = tuple(s.name for s in TASKS)
_BY_NAME = {s.name: s for s in TASKS}
AUTO = "auto"  # tasks.auxiliary_tasks: decided from the dataset when training starts


def auto_tasks(with_depth: bool) -> list[str]:
    """What `auto` trains: every task, depth only when the data has every map it needs."""
    return [s.name for s in TASKS if with_depth or not s.needs_depth]


def spec_of(name: str) -> TaskSpec:
    """The spec of task `name`; ValueError naming the known tasks otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        if name == AUTO:
            raise ValueError("tasks.auxiliary_tasks=auto is decided from the dataset when "
                             "training starts; name the tasks here") from None
        raise ValueError(f"unknown auxiliary task {name!r}; known: {', '.join(TASK_NAMES)}"
                         ) from None


def specs_of(names: Iterable[str]) -> list[TaskSpec]:
    """The specs of `names`, in priority order whatever order they were given in."""
    wanted = {spec_of(n) for n in names}
    return [s for s in TASKS if s in wanted]


def needs_depth(names: Iterable[str]) -> bool:
    """Whether a run with these tasks must load depth maps."""
    return any(s.needs_depth for s in specs_of(names))
