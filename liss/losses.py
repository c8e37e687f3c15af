"""Loss primitives shared by the model and the tasks (computed in fp32 under autocast)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def gan_loss(pred: Tensor, target_is_real: bool, mode: str) -> Tensor:
    """LSGAN (MSE to 1/0, the paper's) or vanilla (BCE with logits) against a constant."""
    pred = pred.float()
    target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, target)
    raise ValueError(f"unknown gan_mode {mode!r}")


def l1(a: Tensor, b: Tensor) -> Tensor:
    return F.l1_loss(a.float(), b.float())
