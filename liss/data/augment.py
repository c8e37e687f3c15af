"""Per-sample geometry: what `data.preprocess` makes of an image, and where its crop sits.

`Preprocess.geometry(h, w)` says, from an image's size alone, what it is resized to and how
big a box is cut from that (CycleGAN's `--preprocess` modes; docs/data.md has the table).
The box's offset and the flip come from the sample key (`train_params`) or are the centre,
unflipped (`center_params`, validation). Both backends turn the same `CropFlip` into pixels,
so a sample has one geometry whichever backend loads it, and its depth map shares it. The
original's flip never fired (spec §2.2 step 3); here it does, unless `data.no_flip`.
"""

from __future__ import annotations

from dataclasses import dataclass

from liss import rng
from liss.config import DataConfig
from liss.nn.sizes import STRIDE

STREAM_Y, STREAM_X, STREAM_FLIP = 11, 12, 13
Size = tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class Geometry:
    """An image is resampled to `resized` (no resampling when that is its own size), then a
    box of `crop` is cut out of it."""

    resized: Size
    crop: Size


@dataclass(frozen=True)
class CropFlip:
    """The box of `geometry.crop` at (y, x) of the resized image, mirrored when `flip`."""

    geometry: Geometry
    y: int
    x: int
    flip: bool


@dataclass(frozen=True)
class Preprocess:
    """`data.preprocess` with the sizes it reads."""

    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256

    @classmethod
    def of(cls, data: DataConfig) -> Preprocess:
        return cls(data.preprocess, data.load_size, data.crop_size)

    @property
    def size_free(self) -> bool:
        """Whether the geometry ignores the image's size (a loader need not look it up)."""
        return self.mode == "resize_and_crop"

    def geometry(self, h: int, w: int) -> Geometry:
        """What an h x w image becomes (h, w after EXIF orientation, as decoded)."""
        load, crop = self.load_size, self.crop_size
        square = (crop, crop)
        if self.mode == "resize_and_crop":
            return Geometry((load, load), square)
        if self.mode == "scale_width_and_crop":  # CycleGAN: height never below the crop
            return Geometry((max(crop, round(load * h / w)), load), square)
        resized = at_least(h, w, crop)
        if self.mode == "crop":
            return Geometry(resized, square)
        if self.mode == "none":
            return Geometry(resized, (resized[0] // STRIDE * STRIDE,
                                      resized[1] // STRIDE * STRIDE))
        raise ValueError(f"unknown data.preprocess {self.mode!r}")


def at_least(h: int, w: int, side: int) -> Size:
    """(h, w), or scaled up (aspect kept) so that the shorter side is `side` when it is
    shorter: `crop` and `none` do not resize, except images too small to crop."""
    short = min(h, w)
    if short >= side:
        return h, w
    return max(side, round(h * side / short)), max(side, round(w * side / short))


def train_params(key: int, geometry: Geometry, flip: bool) -> CropFlip:
    """A crop offset and a flip drawn from the sample key."""
    (h, w), (ch, cw) = geometry.resized, geometry.crop
    return CropFlip(
        geometry,
        y=rng.mix32_int(key ^ rng.mix32_int(STREAM_Y)) % (h - ch + 1),
        x=rng.mix32_int(key ^ rng.mix32_int(STREAM_X)) % (w - cw + 1),
        flip=flip and rng.mix32_int(key ^ rng.mix32_int(STREAM_FLIP)) % 2 == 1,
    )


def center_params(geometry: Geometry) -> CropFlip:
    """Validation: deterministic centre crop, no flip."""
    (h, w), (ch, cw) = geometry.resized, geometry.crop
    return CropFlip(geometry, (h - ch) // 2, (w - cw) // 2, False)
