"""Augmentation parameters, drawn from the sample key so every backend agrees.

Both backends resize to load_size, then crop crop_size at (y, x) and optionally flip the
image and its depth map together. The original's flip never fired (spec §2.2 step 3);
here it does, unless `data.no_flip`.
"""

from __future__ import annotations

from dataclasses import dataclass

from liss import rng

STREAM_Y, STREAM_X, STREAM_FLIP = 11, 12, 13


@dataclass(frozen=True)
class CropFlip:
    y: int
    x: int
    flip: bool


def train_params(key: int, load_size: int, crop_size: int, flip: bool) -> CropFlip:
    room = load_size - crop_size + 1
    return CropFlip(
        y=rng.mix32_int(key ^ rng.mix32_int(STREAM_Y)) % room,
        x=rng.mix32_int(key ^ rng.mix32_int(STREAM_X)) % room,
        flip=flip and rng.mix32_int(key ^ rng.mix32_int(STREAM_FLIP)) % 2 == 1,
    )


def center_params(load_size: int, crop_size: int) -> CropFlip:
    """Validation: deterministic centre crop, no flip."""
    offset = (load_size - crop_size) // 2
    return CropFlip(offset, offset, False)
