"""PatchGAN discriminator with an optional SSGAN rotation head (spec §1.2)."""

from __future__ import annotations

from torch import Tensor, nn

from liss.nn.blocks import conv_bias, norm_factory

ROTATION_CLASSES = 5  # four rotations + "fake"
ROTATION_GRID = 30  # the original's 30x30 map at 256 px; other sizes are pooled to it


class Discriminator(nn.Module):
    """Shared trunk; `forward(x)` is the PatchGAN map, `forward(x, rotation=True)` (alias
    `rotation_logits(x)`) the 5-way head: one `forward`, so a frozen view of the module
    (`liss.nn.blocks.call_frozen`) reaches both heads.

    The original rotation head flattened the 30x30 map of a 256 px input into a 900->5
    linear layer, so it failed at any other size. An adaptive average pool to 30x30 (the
    identity at 256 px) makes it accept any crop size.
    """

    def __init__(self, ndf: int, n_layers: int, norm: str, rotation_head: bool):
        super().__init__()
        make_norm, bias = norm_factory(norm), conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias),
                       make_norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        self.trunk = nn.Sequential(*layers)
        self.gan_head = nn.Conv2d(ndf * mult, 1, 4, 1, 1)
        self.rotation_head = nn.Sequential(
            nn.Conv2d(ndf * mult, 1, 4, 1, 1, bias=bias), make_norm(1), nn.LeakyReLU(0.2, True),
            nn.AdaptiveAvgPool2d(ROTATION_GRID), nn.Flatten(),
            nn.Linear(ROTATION_GRID**2, ROTATION_CLASSES),
        ) if rotation_head else None

    def forward(self, x: Tensor, rotation: bool = False) -> Tensor:
        if not rotation:
            return self.gan_head(self.trunk(x))
        if self.rotation_head is None:
            raise RuntimeError("this discriminator was built without a rotation head")
        return self.rotation_head(self.trunk(x))

    def rotation_logits(self, x: Tensor) -> Tensor:
        return self(x, rotation=True)
