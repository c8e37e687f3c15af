"""The unpaired two-domain sample stream, sharded by rank and resumable by position.

The stream is an endless concatenation of epochs. An epoch is max(|A|, |B|) positions;
position p of epoch e takes A[perm_e[p mod N] mod |A|] (perm_e seeded by seed and e) and
an independent random B (spec §2.1). Step s of a run with world size W and local batch b
covers positions [s·W·b, (s+1)·W·b); rank r takes the r-th block of b. So:
- each rank sees disjoint positions and together they see every position once;
- a 2 x 1 run sees the same samples as a 1 x 2 run;
- resuming needs only the step count, and continues the exact same stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from liss import rng

DOMAIN_A, DOMAIN_B = 0, 1


@dataclass(frozen=True)
class SampleRef:
    """Everything a backend needs to load one training sample."""

    position: int
    index_A: int
    index_B: int
    key_A: int
    key_B: int


class StreamSampler(torch.utils.data.Sampler):
    """Yields this rank's `SampleRef`s from `start_step` on, forever."""

    def __init__(self, n_A: int, n_B: int, *, seed: int, local_batch: int, rank: int = 0,
                 world_size: int = 1, start_step: int = 0):
        if min(n_A, n_B) < 1:
            raise ValueError(f"both domains need images (got {n_A} A, {n_B} B)")
        self.n_A, self.n_B, self.seed = n_A, n_B, seed
        self.local_batch, self.rank, self.world_size = local_batch, rank, world_size
        self.start_step = start_step
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    @property
    def epoch_length(self) -> int:
        return max(self.n_A, self.n_B)

    @property
    def global_batch(self) -> int:
        return self.local_batch * self.world_size

    def epoch_of(self, position: int) -> int:
        return position // self.epoch_length

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(rng.sample_key(self.seed, epoch, 0xE70C))
            self._perm, self._perm_epoch = torch.randperm(self.epoch_length, generator=g), epoch
        return self._perm

    def sample(self, position: int) -> SampleRef:
        epoch, offset = divmod(position, self.epoch_length)
        index_A = int(self._permutation(epoch)[offset]) % self.n_A
        index_B = rng.sample_key(self.seed, position, 0xB) % self.n_B
        return SampleRef(position, index_A, index_B,
                         rng.sample_key(self.seed, position, DOMAIN_A),
                         rng.sample_key(self.seed, position, DOMAIN_B))

    def positions(self) -> Iterator[int]:
        step = self.start_step
        while True:
            first = step * self.global_batch + self.rank * self.local_batch
            yield from range(first, first + self.local_batch)
            step += 1

    def __iter__(self) -> Iterator[SampleRef]:
        return (self.sample(p) for p in self.positions())
