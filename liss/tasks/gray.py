"""Colorization: recover the colour image from its 3-channel luminance copy."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from liss.config import ModelConfig
from liss.losses import gan_loss
from liss.nn.generator import ImageHead
from liss.tasks.base import AuxTask, Critic, TaskInputs
from liss.taskspec import spec_of

# ITU-R 601-2 luma, as PIL's "L" conversion. The weights sum to 1, so applying them to
# [-1, 1] images gives the same gray as converting in [0, 1] and rescaling.
LUMA = (0.299, 0.587, 0.114)
ADVERSARIAL_WEIGHT = 0.1  # the task loss is 0.1 * GAN + 0.9 * L1 (spec §3)


def to_gray(images: Tensor) -> Tensor:
    """[N,3,H,W] colour -> [N,3,H,W] luminance repeated over the three channels."""
    r, g, b = images.unbind(1)
    luma = LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
    return luma.unsqueeze(1).repeat(1, 3, 1, 1)


class GrayTask(AuxTask):
    spec = spec_of("gray")

    def head(self, cfg: ModelConfig) -> nn.Module:
        return ImageHead(cfg.ngf, cfg.head_blocks, cfg.norm, out_channels=3, tanh=True,
                         dropout=not cfg.no_dropout)

    def inputs(self, image: Tensor, depth: Tensor | None, keys: Tensor) -> TaskInputs:
        return TaskInputs(to_gray(image), image)

    def loss(self, pred: Tensor, target: Tensor, discriminator: Critic | None) -> Tensor:
        if discriminator is None:
            raise ValueError("the gray task needs its discriminator")
        adversarial = gan_loss(discriminator(pred), True, self.gan_mode)
        reconstruction = F.l1_loss(pred.float(), target.float())
        return ADVERSARIAL_WEIGHT * adversarial + (1 - ADVERSARIAL_WEIGHT) * reconstruction
