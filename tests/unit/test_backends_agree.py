"""torch and DALI deliver the same stream: same files, keys, crop boxes and flips, pixels
within a bound, depth aligned with its image, identical validation, resumable; in every
`data.preprocess` mode, on non-square images. (Sharded across real torchrun processes:
integration/test_backends_agree_torchrun.py.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liss import config
from liss.config import PREPROCESS_MODES
from liss.data.augment import Preprocess, train_params
from liss.data.batch import Batch
from liss.data.layout import depth_path, list_images
from liss.data.pipeline import InputPipeline, build_pipeline

BACKENDS = ("torch", "dali")
REPO = Path(__file__).resolve().parents[2]


def pipeline(root: Path, backend: str, *extra: str) -> InputPipeline:
    return build_pipeline(config.load(None, [
        f"data.root={root}", f"data.backend={backend}", "data.num_workers=0",
        "train.device=cpu", *extra]))


def take(data: InputPipeline, n: int, start_step: int = 0) -> list[Batch]:
    return list(itertools.islice(data.train_batches(start_step), n))


@pytest.fixture(scope="module")
def wide_root(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic scenes made non-square: A 64x40 (wide), B 40x56 (tall), depth alike."""
    root = tmp_path_factory.mktemp("wide")
    for split, size in (("trainA", (64, 40)), ("trainB", (40, 56)), ("testA", (64, 40)),
                        ("testB", (40, 56))):
        (root / split / "depths").mkdir(parents=True)
        for image in list_images(synth_root / split):
            for path in (image, depth_path(image)):
                out = root / split / path.relative_to(synth_root / split)
                Image.open(path).resize(size, Image.Resampling.BICUBIC).save(out)
    return root


@pytest.mark.parametrize("sizes", [("40", "32"), ("64", "48")], ids=["down", "up"])
@pytest.mark.parametrize("mode", PREPROCESS_MODES)
def test_same_samples_and_pixels_within_a_bound(wide_root: Path, sizes, mode: str) -> None:
    """Downscaling (to 40) and upscaling (to 64) the non-square scenes, in every mode: the
    backends' resize filters differ a little, nothing else may."""
    load, crop = sizes
    extra = (f"data.load_size={load}", f"data.crop_size={crop}", "data.batch_size=4",
             f"data.preprocess={mode}")
    ref, dali = (take(pipeline(wide_root, b, *extra), 3) for b in BACKENDS)
    for t, d in zip(ref, dali, strict=True):
        for dom in "AB":
            x, y = t[dom], d[dom]
            assert torch.equal(x.key, y.key) and torch.equal(x.index, y.index)
            assert y.image.shape == x.image.shape and y.depth.shape == x.depth.shape
            per_sample = (x.image - y.image).abs().flatten(1).mean(1)
            assert per_sample.max() < 5e-3, per_sample  # measured: ~2e-5
            assert (x.image - y.image).abs().max() < 0.08
            assert (x.depth - y.depth).abs().mean() < 1e-3
            assert y.image.min() >= -1 and y.image.max() <= 1
            assert y.depth.min() >= 0 and y.depth.max() <= 1


@pytest.fixture(scope="module")
def coords_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64x40 images whose red channel is the column and green the row; `col` has the column
    as its (16-bit) depth map, `row` the row."""
    root = tmp_path_factory.mktemp("coords")
    h, w = 40, 64
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 / (w - 1), y * 255 / (h - 1), np.zeros_like(x)], -1)
    depths = {"col": x * 65535 / (w - 1), "row": y * 65535 / (h - 1)}
    for folder in ("trainA", "trainB", "valA", "valB"):
        (root / folder / "depths").mkdir(parents=True)
        for name, depth in depths.items():
            Image.fromarray(rgb.round().astype(np.uint8)).save(root / folder / f"{name}.png")
            Image.fromarray(depth.round().astype(np.uint16)).save(
                root / folder / "depths" / f"{name}.png")
    return root


def expected_ramp(start: int, n_out: int, src: int, resized: int, flip: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A linear ramp 0..1 over `src` pixels, resized to `resized`, cropped at `start`: the
    source coordinate of each output pixel, and a mask of those away from the borders."""
    j = np.arange(n_out)
    if flip:
        j = j[::-1]
    u = (start + j + 0.5) * src / resized - 0.5
    return u / (src - 1), (u > 2) & (u < src - 3)


@pytest.mark.parametrize("mode", PREPROCESS_MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_crop_box_flip_and_depth_alignment(coords_root: Path, backend: str, mode: str) -> None:
    """For every sample of the 64x40 images: the crop box and flip are `train_params(key)`'s
    for the mode's geometry, read back from the depth ramp, and the image's coordinate
    channel matches the depth through resize, crop and flip."""
    prep = Preprocess(mode, 48, 32)
    data = pipeline(coords_root, backend, f"data.load_size={prep.load_size}",
                    f"data.crop_size={prep.crop_size}", "data.batch_size=8",
                    f"data.preprocess={mode}")
    names = [f.stem for f in data.splits["train"].A]
    geometry = prep.geometry(40, 64)
    (rh, rw), (ch, cw) = geometry.resized, geometry.crop
    flips = set()
    for batch in take(data, 3):
        for dom in "AB":
            x = batch[dom]
            for image, depth, key, index in zip(x.image, x.depth, x.key, x.index, strict=True):
                assert image.shape[-2:] == depth.shape[-2:] == (ch, cw)
                p = train_params(int(key), geometry, flip=True)
                flips.add(p.flip)
                if names[index] == "col":  # depth = column: x offset and flip
                    want, inside = expected_ramp(p.x, cw, 64, rw, p.flip)
                    got, channel = depth[0], image[0]
                else:  # depth = row: y offset
                    want, inside = expected_ramp(p.y, ch, 40, rh, False)
                    got, channel = depth[0].T, image[1].T
                err = (got - torch.from_numpy(want).float()[None, :]).abs()[:, inside]
                assert err.max() < 2e-3, (backend, names[index], p)
                assert ((channel + 1) / 2 - got).abs().max() < 0.02  # image follows its depth
    assert flips == {True, False}


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_continues_the_stream(synth_root: Path, backend: str) -> None:
    data = pipeline(synth_root, backend, "data.load_size=40", "data.crop_size=32",
                    "data.batch_size=2")
    whole, resumed = take(data, 5), take(data, 2, start_step=3)
    for a, b in zip(whole[3:], resumed, strict=True):
        for dom in "AB":
            for field in ("image", "depth", "key", "index"):
                assert torch.equal(getattr(a[dom], field), getattr(b[dom], field)), field


@pytest.mark.parametrize("mode", PREPROCESS_MODES)
def test_validation_is_deterministic_and_identical_across_backends(wide_root: Path,
                                                                   mode: str) -> None:
    extra = ("data.load_size=40", "data.crop_size=32", "data.val_fraction=0.3",
             f"data.preprocess={mode}")
    torch_data, dali_data = (pipeline(wide_root, b, *extra) for b in BACKENDS)
    for dom in "AB":
        runs = [list(torch_data.eval_batches("val", dom)), list(dali_data.eval_batches("val", dom)),
                list(dali_data.eval_batches("val", dom))]
        assert sum(len(x) for x in runs[0]) == len(torch_data.splits["val"][dom]) >= 2
        for other in runs[1:]:
            for a, b in zip(runs[0], other, strict=True):
                assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
                assert torch.equal(a.key, b.key) and torch.equal(a.index, b.index)
