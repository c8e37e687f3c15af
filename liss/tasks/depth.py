"""Depth prediction from the shared encoding of the real image (no extra encoder pass)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from liss.config import ModelConfig
from liss.nn.generator import ImageHead
from liss.tasks.base import AuxTask, Critic, TaskInputs
from liss.taskspec import spec_of


def depth_target(depth: Tensor) -> Tensor:
    """Stored depth x in [0,1] -> normalised log depth (-ln(x + 1e-6) - 2) / 2 (spec §2.2)."""
    return (-torch.log(depth.float().clamp(0.0, 1.0) + 1e-6) - 2.0) / 2.0


class DepthTask(AuxTask):
    spec = spec_of("depth")

    def head(self, cfg: ModelConfig) -> nn.Module:
        return ImageHead(cfg.ngf, cfg.head_blocks, cfg.norm, out_channels=1, tanh=False,
                         dropout=not cfg.no_dropout)

    def inputs(self, image: Tensor, depth: Tensor | None, keys: Tensor) -> TaskInputs:
        if depth is None:
            raise ValueError("the depth task needs depth maps in the batch")
        return TaskInputs(None, depth_target(depth))

    def loss(self, pred: Tensor, target: Tensor, discriminator: Critic | None) -> Tensor:
        return F.l1_loss(pred.float(), target)
