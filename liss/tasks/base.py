"""The auxiliary-task protocol: build inputs from a batch on device, a head, a loss, a metric.

Adding a task means one module with an `AuxTask` subclass, registered in `liss.tasks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn

from liss.config import ModelConfig


@dataclass(frozen=True)
class TaskInputs:
    """`input` None means: reuse the encoding of the real image (no extra encoder pass)."""

    input: Tensor | None
    target: Tensor


class AuxTask(ABC):
    """One self-supervised task. Stateless; losses are unweighted (the model applies λ)."""

    name: ClassVar[str]
    metric: ClassVar[Literal["acc", "loss"]]
    lambda_key: ClassVar[str]  # LossConfig field weighting the task
    has_discriminator: ClassVar[bool] = False

    @property
    def threshold_key(self) -> str:
        return f"{self.name}_{self.metric}_threshold"

    @property
    def lr_key(self) -> str:
        return f"lr_{self.name}"

    @abstractmethod
    def head(self, cfg: ModelConfig) -> nn.Module:
        """A fresh head for one generator."""

    @abstractmethod
    def inputs(self, image: Tensor, depth: Tensor | None, keys: Tensor) -> TaskInputs:
        """Inputs and targets from real images [N,3,H,W] in [-1,1] (and depth [N,1,H,W])."""

    @abstractmethod
    def loss(self, pred: Tensor, target: Tensor, discriminator: nn.Module | None) -> Tensor:
        """The task's loss, mean over the batch."""

    def correct(self, pred: Tensor, target: Tensor) -> Tensor:
        """Number of correct predictions (accuracy tasks only)."""
        raise NotImplementedError(f"{self.name} is not an accuracy task")

    def count(self, target: Tensor) -> int:
        """How many predictions a target holds (the accuracy denominator)."""
        return target.shape[0]
