"""LiSS generator: a shared encoder with named heads (spec §1.1).

`Generator(x)` is the translation network `decoder(encoder(x))`; auxiliary tasks call
`generator.heads[task](features)` on the encoder's output. Widths scale with `ngf`
(ngf=64 gives the paper's 64/128/256 channels).
"""

from __future__ import annotations

from torch import Tensor, nn

from liss.nn.blocks import ResnetBlock, conv_bias, norm_factory


class Encoder(nn.Module):
    """pad3-conv7, two stride-2 convs, ResNet blocks: [N,3,H,W] -> [N,4·ngf,H/4,W/4]."""

    def __init__(self, ngf: int, n_blocks: int, norm: str, dropout: bool = False):
        super().__init__()
        make_norm, bias = norm_factory(norm), conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=bias), make_norm(ngf), nn.ReLU(True)
        ]
        for mult in (1, 2):  # sizes.DOWNSAMPLINGS
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                       make_norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        self.net = nn.Sequential(*layers)
        self.out_channels = ngf * 4

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageHead(nn.Module):
    """ResNet blocks, two stride-2 transposed convs, pad3-conv7 to `out_channels`.

    Used for translation (3 channels, tanh), colorization (3, tanh) and depth (1, linear).
    """

    def __init__(self, ngf: int, n_blocks: int, norm: str, out_channels: int, tanh: bool,
                 dropout: bool = False):
        super().__init__()
        make_norm, bias = norm_factory(norm), conv_bias(norm)
        layers: list[nn.Module] = [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       make_norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7)]
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ClassifierHead(nn.Module):
    """Three stride-2 convs with a max-pool after the second, then a linear layer.

    The original max-pools 2x2, so its flattened map is 4x4 only for 256 px rotation
    inputs (and 222 px jigsaw puzzles) and collapses to 1x1 at small crops. An adaptive
    max-pool to 8x8 is that same 2x2 pool at 256 px and gives the 4x4 map at any size
    (222 px puzzles pool 14->8 where the original pooled 14->7; both end at 4x4). The
    last norm is sized for its 2·ngf channels (the original declared 4·ngf).
    """

    def __init__(self, ngf: int, norm: str, n_classes: int):
        super().__init__()
        make_norm = norm_factory(norm)
        c = ngf * 4
        self.net = nn.Sequential(
            nn.Conv2d(c, c, 3, stride=2, padding=1), make_norm(c), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, c, 3, stride=2, padding=1), make_norm(c), nn.LeakyReLU(0.2, True),
            nn.AdaptiveMaxPool2d(8),
            nn.Conv2d(c, c // 2, 3, stride=2, padding=1), make_norm(c // 2),
            nn.LeakyReLU(0.2, True),
            nn.Flatten(),
            nn.Linear(c // 2 * 16, n_classes),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class Generator(nn.Module):
    """Encoder + `heads["decoder"]` + one head per auxiliary task."""

    def __init__(self, encoder: Encoder, heads: dict[str, nn.Module]):
        super().__init__()
        if "decoder" not in heads:
            raise ValueError("a generator needs a 'decoder' head")
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)

    @property
    def decoder(self) -> nn.Module:
        return self.heads["decoder"]

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))
