"""Building blocks shared by generators and discriminators: norms, ResNet block, init."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import Tensor, nn
from torch.func import functional_call

NormFactory = Callable[[int], nn.Module]


def norm_factory(kind: str) -> NormFactory:
    """InstanceNorm (affine-free, as CycleGAN), BatchNorm, or no normalisation."""
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def conv_bias(kind: str) -> bool:
    """Convs carry a bias exactly when the norm does not cancel it (CycleGAN's rule)."""
    return kind != "batch"


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, norm, ReLU, (dropout), pad, conv3x3, norm](x); no activation after."""

    def __init__(self, dim: int, norm: str, dropout: bool = False):
        super().__init__()
        make_norm, bias = norm_factory(norm), conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim), nn.ReLU(True)
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x)


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Conv/Linear weights from the chosen scheme, biases 0; BatchNorm weights N(1, gain)."""
    initialisers = {
        "normal": lambda w: nn.init.normal_(w, 0.0, gain),
        "xavier": lambda w: nn.init.xavier_normal_(w, gain=gain),
        "kaiming": lambda w: nn.init.kaiming_normal_(w, a=0, mode="fan_in"),
        "orthogonal": lambda w: nn.init.orthogonal_(w, gain=gain),
    }
    if init_type not in initialisers:
        raise ValueError(f"unknown init_type {init_type!r}")
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            initialisers[init_type](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def call_frozen(module: nn.Module, *args: Tensor, **kwargs) -> Tensor:
    """`module(*args, **kwargs)` with its parameters detached: gradients reach the inputs but
    never the weights. How the generator step uses the discriminators: no `requires_grad`
    toggling per step, and no gradient lands in a discriminator's DDP buckets outside its own
    step."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args, kwargs)
