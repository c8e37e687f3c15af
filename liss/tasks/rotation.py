"""Rotation prediction: classify which multiple of 90° an image was rotated by."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from liss.config import ModelConfig
from liss.nn.generator import ClassifierHead
from liss.tasks.base import AuxTask, Critic, TaskInputs
from liss.taskspec import N_ROTATIONS, spec_of


def center_square(images: Tensor, side: int | None = None) -> Tensor:
    """The centred side x side square of [N,C,H,W] images; default the largest (the images
    themselves when square)."""
    h, w = images.shape[-2:]
    side = min(h, w) if side is None else side
    top, left = (h - side) // 2, (w - side) // 2
    return images[..., top:top + side, left:left + side]


def rotation_stack(images: Tensor) -> tuple[Tensor, Tensor]:
    """All four counter-clockwise rotations of images, sample-major.

    [N,C,H,W] -> ([4N,C,S,S], labels [4N]); rows 4i..4i+3 are sample i rotated by
    0°, 90°, 180°, 270°. A non-square image (data.preprocess=none) is rotated as its largest
    centred square, S = min(H, W): the rotated copies then share one shape, and the
    task cannot be solved from the aspect ratio alone. The original shuffled the four per
    sample; with per-instance normalisation and a mean loss the order changes nothing, so it
    is fixed here.
    """
    images = center_square(images)
    rotated = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(N_ROTATIONS)],
                          dim=1)
    labels = torch.arange(N_ROTATIONS, device=images.device).repeat(images.shape[0])
    return rotated.flatten(0, 1), labels


class RotationTask(AuxTask):
    spec = spec_of("rotation")

    def head(self, cfg: ModelConfig) -> nn.Module:
        return ClassifierHead(cfg.ngf, cfg.norm, N_ROTATIONS)

    def inputs(self, image: Tensor, depth: Tensor | None, keys: Tensor) -> TaskInputs:
        stack, labels = rotation_stack(image)
        return TaskInputs(stack, labels)

    def loss(self, pred: Tensor, target: Tensor, discriminator: Critic | None) -> Tensor:
        return F.cross_entropy(pred.float(), target)

    def correct(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred.argmax(1) == target).sum()
