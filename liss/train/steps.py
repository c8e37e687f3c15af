"""The two halves of a training step as modules, so torch DDP can wrap them.

Each `forward` computes every loss of its update (the shared encoder may run many times
inside it), so DDP sees one forward and one backward per step and overlaps its gradient
all-reduce with that backward. A module registers only what its update trains: the
generator step owns G_A and G_B with their task heads, the discriminator step the
discriminators. What else a loss uses (discriminators in the G step, reference encoders) is
reached through the unregistered `LissModel`, frozen.

`Side` is one update: the (wrapped) step module, its optimizer and grad scaler. It re-wraps at
each phase change, after `LissModel.apply_phase` has set `requires_grad`, so the wrapped
parameter set is exactly what the phase trains.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from liss.data.batch import Batch
from liss.model import GeneratorOutput, LissModel
from liss.schedule import Phase


class GeneratorStep(nn.Module):
    """`forward(batch, phase)` -> every weighted G-side loss term of the step."""

    def __init__(self, model: LissModel):
        super().__init__()
        self.G = model.G  # the only registered parameters: generators and their task heads
        self._losses = model.generator_losses  # a bound method: `model` stays unregistered

    def forward(self, batch: Batch, phase: Phase) -> GeneratorOutput:
        return self._losses(batch, phase)


class DiscriminatorStep(nn.Module):
    """`forward(batch, gen, pooled, phase)` -> every D-side loss term of the step."""

    def __init__(self, model: LissModel):
        super().__init__()
        self.D, self.task_D = model.D, model.task_D
        self._losses = model.discriminator_losses

    def forward(self, batch: Batch, gen: GeneratorOutput, pooled: dict[str, Tensor],
                phase: Phase) -> dict[str, Tensor]:
        return self._losses(batch, gen, pooled, phase)


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class Side:
    """One update (G or D): the step module as DDP wraps it, its optimizer and grad scaler,
    and the count of fp16 steps the scaler skipped (inf/nan gradients)."""

    def __init__(self, name: str, step: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, device: torch.device, compile: bool):
        self.name, self.step, self.optimizer, self.scaler = name, step, optimizer, scaler
        self.compile = compile
        self.skipped = torch.zeros((), device=device)
        self.wrapped: nn.Module | None = None  # set by `wrap`; None: nothing to train
        self.ddp: DistributedDataParallel | None = None  # the DDP wrapper, if distributed

    def wrap(self) -> None:
        """(Re-)wrap the step module for the current `requires_grad` (call after every
        `apply_phase`). Under a process group DDP reduces the gradients in buckets while the
        backward runs; without one (a plain `liss train`) the module runs as it is."""
        self.wrapped = self.ddp = None  # drop the previous wrapper and its autograd hooks
        if not trainable(self.step):
            return
        if dist.is_initialized():
            # defaults: rank 0's buffers broadcast at each forward, no unused-parameter scan
            self.ddp = DistributedDataParallel(self.step)
        module = self.ddp or self.step
        self.wrapped = torch.compile(module) if self.compile else module

    @property
    def active(self) -> bool:
        """False in a phase that trains nothing on this side (no forward, no update)."""
        return self.wrapped is not None

    def __call__(self, *args: Any) -> Any:
        assert self.wrapped is not None, f"{self.name} trains nothing in this phase"
        return self.wrapped(*args)

    def update(self, loss: Tensor) -> None:
        """Backward (DDP averages the gradients during it), then the optimizer step."""
        self.optimizer.zero_grad(set_to_none=True)  # frozen parameters keep grad None
        self.scaler.scale(loss).backward()
        if self.scaler.is_enabled():  # fp16: the scaler skips a step with inf/nan gradients
            self.scaler.unscale_(self.optimizer)
            grads = [p.grad for g in self.optimizer.param_groups for p in g["params"]
                     if p.grad is not None]
            largest = torch.nn.utils.get_total_norm(grads, norm_type=float("inf"))
            self.skipped += (~torch.isfinite(largest)).to(self.skipped.dtype)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "skipped": self.skipped.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.skipped = state["skipped"].to(self.skipped.device)
