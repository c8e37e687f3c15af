"""Decoding image and depth files into float tensors in [0, 1] (PIL, any common format)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


class BadImageError(OSError):
    """An image file that cannot be decoded; the message names the file and the reason."""


def _to_unit_array(im: Image.Image, gray: bool) -> np.ndarray:
    """HxWxC float32 in [0, 1]: 16-bit stays 16-bit, alpha is dropped, CMYK/palette -> RGB."""
    if im.mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(im, dtype=np.float32).clip(0, 65535) / 65535.0
        return arr[..., None] if gray else np.repeat(arr[..., None], 3, axis=-1)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32).clip(0, 1)
        return arr[..., None] if gray else np.repeat(arr[..., None], 3, axis=-1)
    arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
    return arr[..., None] if gray else arr


def read_image(path: Path, gray: bool = False) -> Tensor:
    """[3,H,W] RGB (or [1,H,W] when `gray`) float in [0, 1], EXIF orientation applied."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImageError(f"{path}: empty file")
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            arr = _to_unit_array(im, gray)
    except BadImageError:
        raise
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise BadImageError(f"{path}: cannot decode ({e.__class__.__name__}: {e})") from None
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
