"""Decoding image and depth files into float tensors in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image


class BadImageError(OSError):
    """An image file that cannot be decoded; the message names the file and the reason."""


def _to_unit(t: Tensor) -> Tensor:
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.dtype == torch.uint16:
        return t.float() / 65535.0
    raise BadImageError(f"unsupported pixel type {t.dtype}")


def _decode_pil(path: Path, mode: str) -> Tensor:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if mode == "L" and im.mode in ("I;16", "I;16B", "I"):
            arr = np.asarray(im, dtype=np.int32).clip(0, 65535).astype(np.float32) / 65535.0
            return torch.from_numpy(arr)[None]
        arr = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def read_image(path: Path, gray: bool = False) -> Tensor:
    """[3,H,W] RGB (or [1,H,W] when `gray`) float in [0, 1].

    torchvision's decoders handle JPEG/PNG/WebP, 16-bit PNG, grayscale, RGBA (alpha
    dropped), CMYK JPEG and EXIF orientation; PIL covers the rest (BMP, TIFF, ...).
    """
    try:
        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        if data.numel() == 0:
            raise BadImageError(f"{path}: empty file")
        try:
            mode = ImageReadMode.GRAY if gray else ImageReadMode.RGB
            return _to_unit(decode_image(data, mode=mode, apply_exif_orientation=True))
        except RuntimeError:
            return _decode_pil(Path(path), "L" if gray else "RGB")
    except BadImageError:
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise BadImageError(f"{path}: cannot decode ({e.__class__.__name__}: {e})") from None
