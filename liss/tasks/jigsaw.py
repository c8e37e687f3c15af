"""Jigsaw: classify which of 64 fixed permutations shuffled the 3x3 tiles of a crop."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from liss import rng
from liss.config import ModelConfig
from liss.nn.generator import ClassifierHead
from liss.tasks.base import AuxTask, Critic, TaskInputs
from liss.taskspec import N_PERMUTATIONS, spec_of

GRID = 3
CROP_RATIO = 222 / 256  # the original cut a 222 px puzzle (74 px tiles) out of 256 px crops
STREAM_Y, STREAM_X, STREAM_PERM = 101, 102, 103


@functools.cache
def permutations(n: int = N_PERMUTATIONS, tiles: int = GRID * GRID) -> np.ndarray:
    """A maximal-Hamming-distance set of `n` permutations of `tiles`, built greedily.

    Start from the identity; repeatedly add the permutation whose minimum Hamming distance
    to the chosen set is largest (ties: lowest lexicographic index). Deterministic, so the
    table is the same on every machine without being stored. [n, tiles] int64.
    """
    every = np.array(list(itertools.permutations(range(tiles))), dtype=np.int8)
    chosen = [0]
    min_dist = (every != every[0]).sum(1)
    for _ in range(n - 1):
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, (every != every[nxt]).sum(1))
    return every[chosen].astype(np.int64)


@functools.cache
def _table_on(device: torch.device) -> torch.Tensor:
    """The table, copied to `device` once (no host-to-device copy in the step)."""
    return torch.as_tensor(permutations(), device=device)


def tile_size(crop_size: int) -> int:
    return max(1, int(crop_size * CROP_RATIO) // GRID)


def jigsaw(images: Tensor, keys: Tensor,
           table: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Cut a random square from each image, shuffle its 3x3 tiles by a keyed permutation.

    Output grid position p receives tile perm[p] (tiles indexed row-major); tiles are
    contiguous. Returns ([N,C,J,J] with J = 3·tile, permutation indices [N]).
    Everything is one gather on the device. `table`: the permutation table on the images'
    device (default: built and cached on first use).
    """
    n, c, h, w = images.shape
    if keys.shape != (n,):
        raise ValueError(f"one key per image expected: {n} images, keys {tuple(keys.shape)}")
    t = tile_size(min(h, w))
    j = GRID * t
    dev = images.device
    table = _table_on(dev) if table is None else table
    perm_idx = rng.randint(keys, STREAM_PERM, N_PERMUTATIONS)
    oy = rng.randint(keys, STREAM_Y, h - j + 1)
    ox = rng.randint(keys, STREAM_X, w - j + 1)
    coord = torch.arange(j, device=dev)
    cell, within = coord // t, coord % t
    position = GRID * cell[:, None] + cell[None, :]  # [J,J] grid position of each pixel
    tile = table[perm_idx][:, position]  # [N,J,J] source tile of each output pixel
    src_y = oy[:, None, None] + (tile // GRID) * t + within[None, :, None]
    src_x = ox[:, None, None] + (tile % GRID) * t + within[None, None, :]
    flat = (src_y * w + src_x).view(n, 1, j * j).expand(n, c, j * j)
    out = images.reshape(n, c, h * w).gather(2, flat).view(n, c, j, j)
    return out, perm_idx


class JigsawTask(AuxTask):
    spec = spec_of("jigsaw")

    def __init__(self, gan_mode: str = "lsgan"):
        super().__init__(gan_mode)
        self.tables: dict[torch.device, Tensor] = {}

    def prepare(self, device: torch.device) -> None:
        """The table on `device` now, outside any compiled step: traced, building it means
        running through all 9! permutations in Python, which torch.compile gives up on."""
        self.tables[device] = _table_on(device)

    def head(self, cfg: ModelConfig) -> nn.Module:
        return ClassifierHead(cfg.ngf, cfg.norm, N_PERMUTATIONS)

    def inputs(self, image: Tensor, depth: Tensor | None, keys: Tensor) -> TaskInputs:
        puzzle, target = jigsaw(image, keys, self.tables.get(image.device))
        return TaskInputs(puzzle, target)

    def loss(self, pred: Tensor, target: Tensor, discriminator: Critic | None) -> Tensor:
        return F.cross_entropy(pred.float(), target)

    def correct(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred.argmax(1) == target).sum()
