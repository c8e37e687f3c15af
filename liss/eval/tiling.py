"""Run a translation network on images of any size: pad to its stride, tile the large ones.

The generator halves the resolution twice and doubles it twice, so its output has the input's
size only when both sides are multiples of 4; and its 2x2-pixel bottleneck is the smallest on
which the ResNet blocks' reflection padding and the instance norms work. Inputs are padded by
reflection (edge replication when an image is too small to reflect) and the output is cropped
back.

Images with a side above the tile size are processed within the memory of one batch of
tiles: whole when their area fits it, else cut into overlapping tiles whose outputs are
blended with weights that fall linearly towards the edges a neighbour overlaps. Instance norm
would give each tile its own statistics, and so its own colour cast; instead a first pass over
the whole image, downscaled to the same memory budget, records every norm's statistics and all
tiles are normalised with them. The result is close to the untiled output, not equal (the
statistics come from a smaller image; bounded in the tests, measured in docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from liss.nn.sizes import STRIDE

MIN_SIDE = 8  # a 2x2 bottleneck

Net = Callable[[Tensor], Tensor]


def _pad_amounts(size: int) -> tuple[int, int]:
    total = max(-size % STRIDE, MIN_SIDE - size)
    return total // 2, total - total // 2


def pad_to_stride(x: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
    """[N,C,H,W] padded to multiples of STRIDE (at least MIN_SIDE); pads (l, r, t, b)."""
    (top, bottom), (left, right) = _pad_amounts(x.shape[-2]), _pad_amounts(x.shape[-1])
    pads = (left, right, top, bottom)
    if not any(pads):
        return x, pads
    reflectable = max(top, bottom) < x.shape[-2] and max(left, right) < x.shape[-1]
    return F.pad(x, pads, mode="reflect" if reflectable else "replicate"), pads


@torch.no_grad()
def forward_padded(net: Net, x: Tensor) -> Tensor:
    """net(x) for any H, W: pad, run, crop back to [N,3,H,W]."""
    padded, (left, _, top, _) = pad_to_stride(x)
    y = net(padded)
    return y[..., top:top + x.shape[-2], left:left + x.shape[-1]]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the fewest tiles of `tile` pixels that cover `length` with neighbours
    overlapping by at least `overlap`, spread evenly (so the overlaps are about equal)."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(length: int, overlap: int, taper_start: bool, taper_end: bool) -> Tensor:
    """1-D blend weights: linear from 1/(overlap+1) up to 1 over the tapered edges."""
    w = torch.ones(length)
    if overlap:
        rise = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        n = min(overlap, length)
        if taper_start:
            w[:n] = torch.minimum(w[:n], rise[:n])
        if taper_end:
            w[length - n:] = torch.minimum(w[length - n:], rise[:n].flip(0))
    return w


class SharedNormStats:
    """Makes every InstanceNorm2d of `net` record its statistics (`record`), then normalise
    with the recorded ones (`replay`), so that all tiles are normalised alike. Modules it cannot
    patch (TorchScript) or a network without instance norm leave it `active` False."""

    def __init__(self, net: Net):
        scripted = isinstance(net, torch.jit.ScriptModule) or not isinstance(net, nn.Module)
        self.norms = [] if scripted else [m for m in net.modules()
                                          if isinstance(m, nn.InstanceNorm2d)]
        self.stats: dict[nn.Module, tuple[Tensor, Tensor]] = {}
        self.recording = True

    @property
    def active(self) -> bool:
        return bool(self.norms)

    def _forward(self, m: nn.InstanceNorm2d) -> Callable[[Tensor], Tensor]:
        def forward(x: Tensor) -> Tensor:
            if self.recording:
                var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
                self.stats[m] = (mean, var)
            mean, var = self.stats[m]
            y = (x - mean) * torch.rsqrt(var + m.eps)
            return y * m.weight[:, None, None] + m.bias[:, None, None] if m.affine else y
        return forward

    def __enter__(self) -> SharedNormStats:
        for m in self.norms:
            m.forward = self._forward(m)
        return self

    def __exit__(self, *exc: object) -> None:
        for m in self.norms:
            del m.forward


@torch.no_grad()
def forward_tiled(net: Net, x: Tensor, tile: int, overlap: int, batch_size: int) -> Tensor:
    """net(x) of one image [1,C,H,W] within the memory of `batch_size` tiles.

    An image whose area fits that budget runs whole (exact). A larger one runs tile by tile,
    blended, with the instance-norm statistics of one pass over the whole image downscaled to
    the budget: per-tile statistics would make each tile's colours drift on its own.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"the tile overlap must be in [0, tile) (tile {tile}, overlap {overlap})")
    _, _, h, w = x.shape
    scale = math.sqrt(tile * tile * batch_size / (h * w))
    if scale >= 1:
        return forward_padded(net, x)
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    boxes = [(y, x0) for y in ys for x0 in xs]
    out = torch.zeros(1, 3, h, w, device=x.device)
    weight = torch.zeros(1, 1, h, w, device=x.device)
    with SharedNormStats(net) as norms:
        if norms.active:
            size = [max(MIN_SIDE, int(n * scale) // STRIDE * STRIDE) for n in (h, w)]
            forward_padded(net, F.interpolate(x, size=size, mode="bilinear", antialias=True,
                                              align_corners=False))
            norms.recording = False
        for i in range(0, len(boxes), batch_size):
            chunk = boxes[i:i + batch_size]
            tiles = torch.cat([x[..., y:y + th, x0:x0 + tw] for y, x0 in chunk])
            for (y, x0), pred in zip(chunk, forward_padded(net, tiles).float(), strict=True):
                wy = _ramp(th, overlap, y > 0, y + th < h)
                wx = _ramp(tw, overlap, x0 > 0, x0 + tw < w)
                blend = (wy[:, None] * wx[None, :]).to(x.device)
                out[0, :, y:y + th, x0:x0 + tw] += pred * blend
                weight[0, 0, y:y + th, x0:x0 + tw] += blend
    return out / weight


def needs_tiling(shape: tuple[int, ...], tile: int) -> bool:
    """Whether an image of `shape` (..., H, W) is tiled; tile 0 means never."""
    return tile > 0 and max(shape[-2], shape[-1]) > tile


def run(net: Net, x: Tensor, *, tile: int = 0, overlap: int = 0, batch_size: int = 1) -> Tensor:
    """net(x) for a batch of same-sized images of any size; each image with a side above
    `tile` runs within the memory of `batch_size` tiles (`forward_tiled`)."""
    if not needs_tiling(x.shape, tile):
        return forward_padded(net, x)
    return torch.cat([forward_tiled(net, image[None], tile, overlap, batch_size)
                      for image in x])
