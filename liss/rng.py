"""Counter-based randomness keyed by sample: the same sample gets the same draws anywhere.

Every sample carries a 32-bit key (derived from seed, epoch and stream position by the
sampler). Task inputs draw from `randint(keys, stream, n)` on the device, so a jigsaw
permutation depends on the sample alone, not on batch size, world size, worker count or
how often the run was resumed, and nothing waits on the host.
"""

from __future__ import annotations

from torch import Tensor

MASK32 = 0xFFFFFFFF
# Two rounds of xorshift-multiply with odd multipliers below 2**31, so that every product
# of a 32-bit value fits in int64 without overflow.
_M1, _M2 = 0x21F0AAAD, 0x735A2D97


def mix32(h: Tensor) -> Tensor:
    """A 32-bit integer hash (avalanching) on int64 tensors holding values < 2**32."""
    h = h & MASK32
    h = h ^ (h >> 16)
    h = (h * _M1) & MASK32
    h = h ^ (h >> 15)
    h = (h * _M2) & MASK32
    return h ^ (h >> 15)


def mix32_int(h: int) -> int:
    """The same hash on a Python int (host-side key derivation)."""
    h &= MASK32
    h ^= h >> 16
    h = (h * _M1) & MASK32
    h ^= h >> 15
    h = (h * _M2) & MASK32
    return h ^ (h >> 15)


def sample_key(*parts: int) -> int:
    """Fold integers (seed, epoch, position, ...) into one 32-bit sample key."""
    h = 0x9E3779B9
    for p in parts:
        h = mix32_int(h ^ mix32_int(p & MASK32) ^ ((p >> 32) & MASK32))
    return h


def randint(keys: Tensor, stream: int, high: int) -> Tensor:
    """One integer in [0, high) per key, independent across `stream` values."""
    salt = mix32_int(stream + 0x5BD1E995)
    return mix32(keys ^ salt) % high
