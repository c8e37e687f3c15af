"""The data contract every input backend delivers (DESIGN.md principle 1).

Loaders ship real images and aligned depth only; task inputs (rotation stacks, jigsaw
tiles, gray copies) are built from these on the training device.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


@dataclass(frozen=True)
class DomainBatch:
    """Images of one domain. `depth` is None when no active task needs it."""

    image: Tensor  # [N,3,H,W] float32 in [-1, 1]
    depth: Tensor | None  # [N,1,H,W] float32 in [0, 1]: the stored 8/16-bit value, rescaled
    key: Tensor  # [N] int64: per-sample randomness key (liss.rng)
    index: Tensor  # [N] int64: file index in the split, for sharding checks and debugging

    def __len__(self) -> int:
        return self.image.shape[0]

    def to(self, device: torch.device, channels_last: bool = False) -> DomainBatch:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        nb = device.type == "cuda"

        def move(t: Tensor | None, spatial: bool) -> Tensor | None:
            if t is None:
                return None
            t = t.to(device, non_blocking=nb)
            return t.contiguous(memory_format=fmt) if spatial else t

        return replace(self, image=move(self.image, True), depth=move(self.depth, True),
                       key=move(self.key, False), index=move(self.index, False))

    def pin_memory(self) -> DomainBatch:
        return replace(self, image=self.image.pin_memory(),
                       depth=None if self.depth is None else self.depth.pin_memory(),
                       key=self.key.pin_memory(), index=self.index.pin_memory())


@dataclass(frozen=True)
class Batch:
    """One training step's local batch: unpaired samples of both domains."""

    A: DomainBatch
    B: DomainBatch

    def __getitem__(self, domain: str) -> DomainBatch:
        return self.A if domain == "A" else self.B

    def to(self, device: torch.device, channels_last: bool = False) -> Batch:
        return Batch(self.A.to(device, channels_last), self.B.to(device, channels_last))

    def pin_memory(self) -> Batch:  # called by DataLoader(pin_memory=True)
        return Batch(self.A.pin_memory(), self.B.pin_memory())


def by_shape(items: Iterable[T], shapes: Iterable[Hashable]) -> list[list[T]]:
    """`items` grouped by their `shapes` (parallel to them), groups in first-seen order and
    items in order within: a batch holds one image size (data.preprocess=none mixes them)."""
    groups: dict[Hashable, list[T]] = {}
    for item, shape in zip(items, shapes, strict=True):
        groups.setdefault(shape, []).append(item)
    return list(groups.values())
