"""Optimizers with per-task parameter groups, and the linear decay rule of spec §5.2."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from liss.config import ConfigError, OptimConfig
from liss.taskspec import spec_of

# torch.optim classes that cannot train these networks: the base class, L-BFGS (its step
# needs a closure re-evaluating the loss), SparseAdam (sparse gradients only) and Muon (2-D
# weights only: conv kernels and norms are not)
NOT_SELECTABLE = ("optimizer", "lbfgs", "sparseadam", "muon")


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The class `optim.name` names, or a ConfigError listing the known names."""
    if name == "radam":
        return torch.optim.RAdam
    if name == "legacy_radam":
        # torch_optimizer.RAdam caches its step size in a buffer shared by all groups, so
        # per-group learning rates (lr_depth, lr_gray, ...) are silently ignored (spec §5.3).
        import torch_optimizer

        return torch_optimizer.RAdam
    by_lower = {n.lower(): getattr(torch.optim, n) for n in dir(torch.optim)
                if inspect.isclass(getattr(torch.optim, n))
                and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)
                and n.lower() not in NOT_SELECTABLE}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    try:
        import torch_optimizer

        return torch_optimizer.get(name)
    except (ImportError, ValueError):
        known = ", ".join(["legacy_radam", *sorted(by_lower)])
        raise ConfigError("optim.name", name, f"unknown optimizer; known: {known} "
                          "(and torch_optimizer's)") from None


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """One optimizer over `groups`; a group with a `task` key gets its task's lr if > 0."""
    cls = optimizer_class(cfg.name)
    for g in groups:
        task_lr = getattr(cfg, spec_of(g["task"]).lr_key) if "task" in g else 0.0
        g["lr"] = task_lr if task_lr > 0 else cfg.lr
        g["initial_lr"] = g["lr"]
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in {"betas": (cfg.beta1, cfg.beta2), "eps": 1e-8,
                                "weight_decay": cfg.weight_decay}.items() if k in accepted}
    return cls(groups, lr=cfg.lr, **kwargs)


@dataclass
class LinearDecay:
    """lr = initial · (1 − d/(n_epochs_decay+1)), d counted at epoch ends past n_epochs while
    translation is active; training is over once d > n_epochs_decay (spec §5.2)."""

    n_epochs: int
    n_epochs_decay: int
    decay_epochs: int = 0

    def end_of_epoch(self, epoch: int, translation_active: bool,
                     optimizers: list[torch.optim.Optimizer]) -> None:
        """Call when 1-based `epoch` has just ended."""
        if epoch > self.n_epochs and translation_active:
            self.decay_epochs += 1
            factor = max(0.0, 1.0 - self.decay_epochs / (self.n_epochs_decay + 1))
            for opt in optimizers:
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * factor

    def state_dict(self) -> dict[str, int]:
        return {"decay_epochs": self.decay_epochs}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.decay_epochs = int(state["decay_epochs"])

    @property
    def finished(self) -> bool:
        return self.decay_epochs > self.n_epochs_decay
