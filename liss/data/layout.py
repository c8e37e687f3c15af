"""CycleGAN folder layout: `ROOT/{train,val,test}{A,B}/<stem>.<ext>` with `depths/<stem>.png`.

Only the top level of a split folder is scanned. Validation images come from `valA/valB`
when they exist, else they are carved from train deterministically (see `split_train_val`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
DOMAINS = ("A", "B")


def list_images(folder: Path) -> list[Path]:
    """Sorted image files at the top level of `folder` (empty list when it does not exist).

    `os.scandir` knows each entry's type from the directory listing itself, so a folder of
    100k images costs no stat per file."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith(".")
                       and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
    return [folder / name for name in names]  # names sort as their paths would, faster


def depth_stems(folder: Path) -> set[str]:
    """Stems of the depth maps in `folder/depths` (one listing, not a stat per image)."""
    return {p.stem for p in list_images(folder / "depths") if p.suffix.lower() == ".png"}


def depth_path(image: Path) -> Path:
    """Where the depth map of `image` lives: `<folder>/depths/<stem>.png`."""
    return image.parent / "depths" / f"{image.stem}.png"


def mask_path(truth: Path) -> Path:
    """Where the object mask of a paired-truth image lives: `<folder>/masks/<stem>.png`."""
    return truth.parent / "masks" / f"{truth.stem}.png"


@dataclass(frozen=True)
class Split:
    """The image files of one split, per domain (after `direction` swapping)."""

    A: list[Path]
    B: list[Path]

    def __getitem__(self, domain: str) -> list[Path]:
        return self.A if domain == "A" else self.B


def _stable_rank(path: Path) -> str:
    return hashlib.sha1(path.name.encode()).hexdigest()


def split_train_val(files: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """Carve a validation set from train: the files with the smallest name hash.

    Hashing names (not positions) keeps the carve stable when files are added or removed.
    At least one file stays on each side when there are two or more.
    """
    if len(files) < 2:
        return list(files), []
    n_val = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
    held = set(sorted(files, key=_stable_rank)[:n_val])
    return [f for f in files if f not in held], [f for f in files if f in held]


def _domain_folder(root: Path, split: str, domain: str, direction: str) -> Path:
    if direction == "BtoA":
        domain = "B" if domain == "A" else "A"
    return root / f"{split}{domain}"


def list_splits(root: Path, *, direction: str = "AtoB", max_dataset_size: int = 0
                ) -> dict[str, Split]:
    """The image files of every split folder, as they are: `val` is empty without valA/valB.

    The training pipeline scans these before carving validation (`carve_validation`), so
    files it drops cannot empty the carved validation set.
    """
    def files(split: str, domain: str) -> list[Path]:
        found = list_images(_domain_folder(root, split, domain, direction))
        return found[:max_dataset_size] if max_dataset_size else found

    return {split: Split(A=files(split, "A"), B=files(split, "B"))
            for split in ("train", "val", "test")}


def carve_validation(splits: dict[str, Split], val_fraction: float) -> dict[str, Split]:
    """Per domain without a val folder, validation carved from train (`split_train_val`)."""
    train, val = {}, {}
    for d in DOMAINS:
        train[d], val[d] = (splits["train"][d], splits["val"][d]) if splits["val"][d] \
            else split_train_val(splits["train"][d], val_fraction)
    return {**splits, "train": Split(**train), "val": Split(**val)}


def load_splits(root: Path, *, direction: str = "AtoB", val_fraction: float = 0.1,
                max_dataset_size: int = 0) -> dict[str, Split]:
    """`{"train": Split, "val": Split, "test": Split}` for a dataset root, nothing dropped."""
    return carve_validation(list_splits(root, direction=direction,
                                        max_dataset_size=max_dataset_size), val_fraction)
