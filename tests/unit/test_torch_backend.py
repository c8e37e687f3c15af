"""The torch backend delivers the Batch contract, with depth aligned to its image, and
substitutes the next loadable file for one that fails. (Failures inside real DataLoader worker
processes: integration/test_torch_backend_workers.py.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liss import config
from liss.data.augment import Preprocess
from liss.data.images import BadImageError, load_or_substitute
from liss.data.pipeline import build_pipeline
from liss.data.torch_backend import TrainDataset


def test_train_batches_follow_the_contract(synth_root: Path) -> None:
    cfg = config.load(None, [f"data.root={synth_root}", "data.load_size=40",
                             "data.crop_size=32", "data.batch_size=3", "data.num_workers=0",
                             "data.backend=torch"])
    data = build_pipeline(cfg)
    batch = next(data.train_batches())
    for d in "AB":
        x = batch[d]
        assert x.image.shape == (3, 3, 32, 32) and x.image.dtype == torch.float32
        assert x.image.min() >= -1 and x.image.max() <= 1
        assert x.depth.shape == (3, 1, 32, 32) and x.depth.min() >= 0 and x.depth.max() <= 1
        assert x.key.dtype == torch.long and x.key.shape == (3,)
    refs = list(itertools.islice(iter(data.sampler()), 3))
    assert batch.A.key.tolist() == [r.key_A for r in refs]
    assert batch.B.index.tolist() == [r.index_B for r in refs]


def test_depth_stays_aligned_through_crop_and_flip(tmp_path: Path) -> None:
    """Image red channel and depth both encode the column: they must agree after augmenting."""
    folder = tmp_path / "trainA"
    (folder / "depths").mkdir(parents=True)
    ramp = np.tile(np.linspace(0, 255, 64).round().astype(np.uint8), (64, 1))
    rgb = np.stack([ramp, np.zeros_like(ramp), np.zeros_like(ramp)], -1)
    Image.fromarray(rgb).save(folder / "x.png")
    Image.fromarray(ramp).save(folder / "depths" / "x.png")
    ds = TrainDataset([folder / "x.png"], [folder / "x.png"],
                      prep=Preprocess("resize_and_crop", 48, 32), flip=True, with_depth=True)
    flips = set()
    for key in range(40):
        image, depth = _load(ds, key)
        red = (image[0] + 1) / 2
        assert (red - depth[0]).abs().max() < 0.02
        flips.add(bool(depth[0, 0, 0] > depth[0, 0, -1]))
    assert flips == {True, False}  # the flip fires, and both ways stay aligned


def _load(ds: TrainDataset, key: int):
    from liss.data.sampler import SampleRef

    sample = ds[SampleRef(0, 0, 0, key, key)]
    image, depth, _, _ = sample["A"]
    return image, depth


def test_substitution_is_the_next_loadable_file(tmp_path: Path) -> None:
    files = [tmp_path / f"{i}.png" for i in range(5)]
    broken = {1, 2, 4}

    def load(path: Path) -> str:
        if int(path.stem) in broken:
            raise BadImageError(path, "broken")
        return path.stem

    known: set[int] = set()
    assert load_or_substitute(files, 1, load, skip=True, known_bad=known) == (
        3, "3", [(files[1], "broken"), (files[2], "broken")])
    assert known == {1, 2}
    assert load_or_substitute(files, 4, load, skip=True, known_bad=known) == (
        0, "0", [(files[4], "broken")])  # wraps round; known failures are not retried
    assert load_or_substitute(files, 2, load, skip=True, known_bad=known)[:2] == (3, "3")
    with pytest.raises(BadImageError, match=r"1\.png: broken"):
        load_or_substitute(files, 1, load, skip=False, known_bad=set())
    broken.update({0, 3})
    with pytest.raises(BadImageError, match="no readable image left"):
        load_or_substitute(files, 0, load, skip=True, known_bad=set())
