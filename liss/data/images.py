"""Reading image and depth files (PIL decode to float [0, 1]), and what to do when one fails.

Both backends read file bytes through `file_bytes` and find depth maps through `depth_file`,
so an empty, unreadable or missing file gets the same reason whichever backend met it; and
both fall back to the same stand-in through `load_or_substitute` (`data.on_bad_file=skip`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from liss.data.layout import depth_path

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
ORIENTATION = 0x0112  # the EXIF tag; values 5-8 store the picture transposed
T = TypeVar("T")
Failures = list[tuple[Path, str]]  # (image that could not be used, why)


class BadImageError(OSError):
    """A file a loader cannot use; the message names the file and the reason.

    Constructible from one message string too, which is how DataLoader re-raises a worker's
    exception in the main process.
    """

    def __init__(self, path: Path | str, reason: str = ""):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}" if reason else str(path))


def file_bytes(path: Path) -> bytes:
    """The whole file; BadImageError when it cannot be read or is empty."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadImageError(path, f"cannot read: {e.strerror or e}") from None
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    return data


def depth_file(image: Path) -> Path:
    """The depth map of `image`; BadImageError naming the image when there is none."""
    depth = depth_path(image)
    if not depth.is_file():
        raise BadImageError(image, f"missing depth map depths/{depth.name}")
    return depth


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
    data = file_bytes(path)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            arr = _to_unit_array(im, gray)
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image Pillow can identify") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImageError(path, f"cannot decode: {type(e).__name__}: {e}") from None
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def image_size(path: Path, data: bytes | None = None) -> tuple[int, int]:
    """(h, w) of the image `read_image` returns (EXIF orientation applied), from the header
    alone: no pixel is decoded. `data`: the file's bytes when they are at hand."""
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            w, h = im.size
            transposed = _orientation(im) in (5, 6, 7, 8)
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image Pillow can identify") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImageError(path, f"cannot read its header: {type(e).__name__}: {e}") from None
    return (w, h) if transposed else (h, w)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation seen without decoding. Pillow's `getexif()` of a PNG decodes all
    of it to look for an eXIf chunk after the pixels (~4 ms at 400x300), so for PNG only a
    chunk ahead of them counts."""
    if im.format != "PNG":
        return im.getexif().get(ORIENTATION, 1)
    exif = Image.Exif()
    if im.info.get("exif"):
        exif.load(im.info["exif"])
    return exif.get(ORIENTATION, 1)


def failure_reason(image: Path, error: BadImageError) -> str:
    """Why `image` is unusable, naming its depth map when that is what failed."""
    if error.path == image or not error.reason:
        return error.reason or str(error)
    return f"{error.path}: {error.reason}"


def load_or_substitute(files: list[Path], index: int, load: Callable[[Path], T], *,
                       skip: bool, known_bad: set[int]) -> tuple[int, T, Failures]:
    """Load files[index]; when it fails and `skip`, the next loadable file (wrapping round).

    Returns (index actually loaded, its data, [(file, reason)] for each new failure). Files in
    `known_bad` are passed over without a retry, and new failures are added to it. The stand-in
    depends only on which files are bad, so every backend, worker and rank picks the same one.
    Without `skip` the first failure is raised.
    """
    failures: Failures = []
    for offset in range(len(files)):
        j = (index + offset) % len(files)
        if j in known_bad:
            continue
        try:
            return j, load(files[j]), failures
        except BadImageError as e:
            if not skip:
                raise
            known_bad.add(j)
            failures.append((files[j], failure_reason(files[j], e)))
    raise BadImageError(files[index].parent, "no readable image left in this folder")
