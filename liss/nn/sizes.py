"""Input sizes the networks accept, torch-free so that the config can refuse a crop size the
networks would fail on mid-step with an obscure shape error."""

from __future__ import annotations

import itertools

DOWNSAMPLINGS = 2  # stride-2 convolutions in the Encoder (and transposed ones in ImageHead)
# A generator's output has its input's size only when both sides are multiples of STRIDE:
# data.preprocess=none crops images to them, liss translate pads to them.
STRIDE = 2**DOWNSAMPLINGS


def min_discriminator_input(n_layers: int, *, instance_norm: bool, rotation_head: bool) -> int:
    """The smallest side (a multiple of STRIDE) a PatchGAN with `n_layers` accepts.

    Each 4x4 convolution with padding 1 maps a side s to s // 2 (stride 2) or s - 1 (stride 1);
    instance norm needs more than one pixel in every map it normalises, and the 4x4 heads
    need an output pixel (the rotation head normalises its map too)."""
    for side in itertools.count(STRIDE, STRIDE):
        s, normalised = side // 2, []
        for _ in range(1, n_layers):
            s //= 2
            normalised.append(s)
        s -= 1  # the last trunk conv, stride 1
        normalised.append(s)
        if rotation_head:
            normalised.append(s - 1)
        if s - 1 >= 1 and (not instance_norm or min(normalised) >= 2):
            return side
    raise AssertionError("unreachable")
