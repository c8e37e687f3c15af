"""The auxiliary-task protocol: build inputs from a batch on device, a head, a loss, a metric.

What the rest of liss knows about a task without torch (config keys, threshold, chance
level, labels) is its `TaskSpec` in `liss.taskspec`; the class only adds the computation.
Adding a task means:

1. a `TaskSpec` in `liss.taskspec.TASKS`, at its place in the priority order;
2. its config fields: `loss.<lambda_key>`, `optim.lr_<name>` and
   `schedule.<name>_<metric>_threshold` (tests/unit/test_taskspec.py checks they exist);
3. a module here with an `AuxTask` subclass whose `spec` is that entry, listed in
   `liss.tasks.TASK_CLASSES`.

Config validation, schedules, optimizer groups, reports and `liss runs compare` /
`liss forgetting` pick it up from the spec.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from liss.config import ModelConfig
from liss.taskspec import Metric, TaskSpec

# A task's discriminator as its loss calls it: in the G step a frozen view
# (`liss.nn.blocks.call_frozen`), so the generator's loss never trains it.
Critic = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class TaskInputs:
    """`input` None means: reuse the encoding of the real image (no extra encoder pass)."""

    input: Tensor | None
    target: Tensor


class AuxTask(ABC):
    """One self-supervised task. Stateless; losses are unweighted (the model applies λ).

    `gan_mode` is the adversarial loss of tasks with a discriminator (ignored by others).
    """

    spec: ClassVar[TaskSpec]

    def __init__(self, gan_mode: str = "lsgan"):
        self.gan_mode = gan_mode

    # the spec's facts, under the names the model and trainer read
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def metric(self) -> Metric:
        return self.spec.metric

    @property
    def lambda_key(self) -> str:
        return self.spec.lambda_key

    @property
    def lr_key(self) -> str:
        return self.spec.lr_key

    @property
    def threshold_key(self) -> str:
        return self.spec.threshold_key

    @property
    def has_discriminator(self) -> bool:
        return self.spec.has_discriminator

    @abstractmethod
    def head(self, cfg: ModelConfig) -> nn.Module:
        """A fresh head for one generator."""

    def prepare(self, device: torch.device) -> None:  # noqa: B027 (an optional hook)
        """Build device-side constants before a step is compiled (default: there are none)."""

    @abstractmethod
    def inputs(self, image: Tensor, depth: Tensor | None, keys: Tensor) -> TaskInputs:
        """Inputs and targets from real images [N,3,H,W] in [-1,1] (and depth [N,1,H,W])."""

    @abstractmethod
    def loss(self, pred: Tensor, target: Tensor, discriminator: Critic | None) -> Tensor:
        """The task's loss, mean over the batch."""

    def correct(self, pred: Tensor, target: Tensor) -> Tensor:
        """Number of correct predictions (accuracy tasks only)."""
        raise NotImplementedError(f"{self.name} is not an accuracy task")

    def count(self, target: Tensor) -> int:
        """How many predictions a target holds (the accuracy denominator)."""
        return target.shape[0]
