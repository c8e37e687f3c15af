"""Bad data, both policies, both backends: every kind of image loads (and the backends agree
on it); unusable files stop the run before training with path and reason (`error`) or are
left out and counted (`skip`); files that break mid-run are substituted deterministically and
counted (`skip`) or raise BadImageError naming them (`error`)."""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liss import config
from liss.cli import main
from liss.config import ConfigError
from liss.data.images import BadImageError, read_image
from liss.data.layout import depth_path
from liss.data.pipeline import InputPipeline, build_pipeline

BACKENDS = ("torch", "dali")


def pipeline(root: Path, backend: str = "torch", *extra: str) -> InputPipeline:
    return build_pipeline(config.load(None, [
        f"data.root={root}", f"data.backend={backend}", "data.num_workers=0",
        f"run.dir={root.parent / 'runs'}",
        "data.load_size=40", "data.crop_size=32", "data.batch_size=2", "train.device=cpu",
        *extra]))


@pytest.fixture
def root(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic dataset (10 train, 4 test images per domain), to break."""
    return shutil.copytree(synth_root, tmp_path / "ds")


def with_depth(image: Path) -> Path:
    shutil.copy(depth_path(image.parent / "00000.jpg"), depth_path(image))
    return image


# --------------------------------------------------------------- image kinds

@pytest.fixture(scope="module")
def kinds_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every image kind the loaders promise, in both domains, each with a depth map."""
    root = tmp_path_factory.mktemp("kinds")
    h, w = 30, 40  # non-square
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 6, y * 8, 255 - x * 3 - y * 2], -1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the pixels are stored rotated
    makers: dict[str, Callable[[Path], None]] = {
        "rgb.jpg": lambda p: Image.fromarray(rgb).save(p, quality=95),
        "rgb.png": lambda p: Image.fromarray(rgb).save(p),
        "gray.jpg": lambda p: Image.fromarray(rgb[..., 0]).save(p, quality=95),
        "gray.png": lambda p: Image.fromarray(rgb[..., 0]).save(p),
        "rgba.png": lambda p: Image.fromarray(np.dstack([rgb, np.full((h, w), 9, np.uint8)]))
        .save(p),
        "palette.png": lambda p: Image.fromarray(rgb).convert("P").save(p),
        "cmyk.jpg": lambda p: Image.fromarray(rgb).convert("CMYK").save(p, quality=95),
        "exif.jpg": lambda p: Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)
        .save(p, quality=95, exif=exif),
        "sixteen.png": lambda p: Image.fromarray((x * 1600 + y * 20).astype(np.uint16)).save(p),
        "one.png": lambda p: Image.fromarray(rgb[:1, :1]).save(p),
    }
    for folder in ("trainA", "trainB", "valA", "valB"):
        (root / folder / "depths").mkdir(parents=True)
        for name, make in makers.items():
            make(root / folder / name)
            Image.fromarray((x * 1600 + y).astype(np.uint16)).save(
                depth_path(root / folder / name))
    return root


def test_every_image_kind_decodes_as_promised(kinds_root: Path) -> None:
    folder = kinds_root / "trainA"

    def read(name: str) -> torch.Tensor:
        return read_image(folder / name)

    assert torch.equal(read("rgba.png"), read("rgb.png"))  # alpha dropped
    assert read("palette.png").shape == read("rgb.png").shape
    for gray in ("gray.jpg", "gray.png"):
        image = read(gray)
        assert image.shape == (3, 30, 40) and torch.equal(image[0], image[2])
    upright = read("exif.jpg")
    assert upright.shape == (3, 30, 40)  # stored 30 wide, 40 high; EXIF turns it back
    assert (upright - read("rgb.jpg")).abs().mean() < 0.02
    assert (read("cmyk.jpg") - read("rgb.jpg")).abs().mean() < 0.02
    sixteen = read("sixteen.png")[0]
    assert sixteen[0, 1] == pytest.approx(1600 / 65535)  # 16 bits kept, not cut to 8
    assert read("one.png").shape == (3, 1, 1)


def test_both_backends_load_every_kind_alike(kinds_root: Path) -> None:
    """One batch holds every A image once (batch = epoch); DALI matches torch on each."""
    n = len(list((kinds_root / "trainA").glob("*.*")))
    batches = [next(pipeline(kinds_root, b, f"data.batch_size={n}").train_batches())
               for b in BACKENDS]
    ref, dali = (b.A for b in batches)
    assert sorted(ref.index.tolist()) == list(range(n))
    assert torch.equal(ref.index, dali.index) and torch.equal(ref.key, dali.key)
    per_image = (ref.image - dali.image).abs().flatten(1).mean(1)
    assert per_image.max() < 5e-3, per_image  # 16-bit PNG: DALI decodes images to 8 bits
    assert (ref.depth - dali.depth).abs().max() < 1e-3
    one = kinds_root / "trainA" / "one.png"
    files = pipeline(kinds_root).splits["train"].A
    for x in (ref, dali):  # a 1-pixel image is resized up to a constant crop
        image = x.image[x.index.tolist().index(files.index(one))]
        assert (image - image[:, :1, :1]).abs().max() < 1e-5


# --------------------------------------------------------------- the start-up scan

def zero_byte(root: Path) -> tuple[Path, str]:
    path = root / "trainA" / "zero.jpg"
    path.write_bytes(b"")
    return with_depth(path), "empty file (0 bytes)"


def not_an_image(root: Path) -> tuple[Path, str]:
    path = root / "trainB" / "notes.png"
    path.write_text("these are not pixels\n")
    return with_depth(path), "not an image Pillow can identify"


def truncated(root: Path) -> tuple[Path, str]:
    path = root / "trainA" / "cut.jpg"
    data = (root / "trainA" / "00001.jpg").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return with_depth(path), "cannot decode: OSError: image file is truncated"


def missing_depth(root: Path) -> tuple[Path, str]:
    path = root / "trainA" / "00003.jpg"
    depth_path(path).unlink()
    return path, "missing depth map depths/00003.png"


def bad_depth(root: Path) -> tuple[Path, str]:
    path = root / "trainB" / "00002.jpg"
    depth_path(path).write_bytes(b"\x89PNG garbage")
    return path, f"{depth_path(path)}: bad depth map: not an image Pillow can identify"


def bad_test_image(root: Path) -> tuple[Path, str]:
    path = root / "testB" / "00001.jpg"
    path.write_bytes(b"\xff\xd8\xff")  # a JPEG marker, then nothing
    return path, "not an image Pillow can identify"


BREAKERS = [zero_byte, not_an_image, truncated, bad_depth, bad_test_image]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__)
def test_error_policy_stops_before_training_with_path_and_reason(root: Path, breaker) -> None:
    path, reason = breaker(root)
    with pytest.raises(ConfigError) as caught:
        pipeline(root)
    message = str(caught.value)
    assert message.startswith("data.on_bad_file='error': ") and "\n" not in message
    assert f"{path}: {reason}" in message
    assert "1 unusable file under" in message and "data.on_bad_file=skip" in message


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__)
def test_skip_policy_leaves_the_file_out_and_counts_it(root: Path, breaker) -> None:
    path, reason = breaker(root)
    data = pipeline(root, "torch", "data.on_bad_file=skip")
    (skipped,) = [item for items in data.skipped_files.values() for item in items]
    assert skipped[0] == path and reason in skipped[1]
    assert data.skipped_count == 1
    assert all(path not in split[d] for split in data.splits.values() for d in "AB")
    for batch in itertools.islice(data.train_batches(), 5):
        assert batch.A.image.isfinite().all()
    assert data.skipped_count == 1  # nothing else went wrong while loading


def test_a_missing_depth_map_turns_auto_depth_off(root: Path) -> None:
    missing_depth(root)
    data = pipeline(root)
    assert data.cfg.tasks.auxiliary_tasks == ["rotation", "jigsaw", "gray"]
    assert data.tasks is not None and "1 of 20 train/val images have no depth map" in \
        data.tasks.reason and "liss data depth" in data.tasks.reason
    assert not data.with_depth and data.skipped_count == 0


def test_auto_trains_depth_when_every_map_is_there(root: Path) -> None:
    data = pipeline(root)
    assert data.cfg.tasks.auxiliary_tasks == ["rotation", "jigsaw", "depth", "gray"]
    assert data.with_depth and next(data.train_batches()).A.depth is not None


def test_explicit_depth_without_its_maps_is_one_line(root: Path) -> None:
    path, _ = missing_depth(root)
    with pytest.raises(ConfigError) as caught:
        pipeline(root, "torch", "tasks.auxiliary_tasks=[depth]")
    message = str(caught.value)
    assert message.startswith("tasks.auxiliary_tasks=['depth']: ") and "\n" not in message
    assert f"1 of 20 train/val images have none (first: {depth_path(path)})" in message
    assert "tasks.auxiliary_tasks=auto" in message and f"liss data depth {root}" in message


def test_skip_leaves_out_the_images_without_a_map(root: Path) -> None:
    path, reason = missing_depth(root)
    data = pipeline(root, "torch", "tasks.auxiliary_tasks=[depth]", "data.on_bad_file=skip")
    assert data.skipped_files["train"] == [(path, reason)]
    assert "1 images without a depth map are skipped" in data.tasks.reason


def test_missing_depth_is_fine_when_no_task_needs_depth(root: Path) -> None:
    for image in (root / "trainA").glob("*.jpg"):
        depth_path(image).unlink()
    data = pipeline(root, "torch", "tasks.auxiliary_tasks=rotation,gray")
    assert data.skipped_count == 0 and next(data.train_batches()).A.depth is None


def test_missing_root_and_empty_split_folders(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset folder not found"):
        pipeline(tmp_path / "nowhere")
    for image in (root / "trainB").glob("*.jpg"):
        image.unlink()
    with pytest.raises(ConfigError, match=r"no train images for domain B \(looked in .*trainB"):
        pipeline(root)


def test_skip_policy_with_no_usable_image_left(root: Path) -> None:
    for image in (root / "trainA").glob("*.jpg"):
        image.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"no train images for domain A \(10 unusable files"):
        pipeline(root, "torch", "data.on_bad_file=skip")


def test_liss_train_refuses_before_training(root: Path, tiny_overrides: list[str],
                                           tmp_path: Path, capsys) -> None:
    path, reason = zero_byte(root)
    assert main(["train", *tiny_overrides, f"data.root={root}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"liss: config error: data.on_bad_file='error': {path}: {reason} "
                   f"(1 unusable file under {root}; list them with `liss data check {root}`, "
                   "or set data.on_bad_file=skip to train without them)"]
    assert not (tmp_path / "runs" / "tiny").exists()  # nothing started


# --------------------------------------------------------------- files that break mid-run

def break_mid_run(data: InputPipeline) -> dict[Path, str]:
    """Break three files after the scan: a deleted A image, a deleted depth map and a B image
    (one the stream reads early) truncated. Returns {image: reason fragment}: DALI reads the
    bytes of the truncated one fine, and only its decoder fails, inside the pipeline."""
    files_A, files_B = data.splits["train"].A, data.splits["train"].B
    early_B = next(itertools.islice(iter(data.sampler()), 3, None)).index_B
    deleted, no_depth, corrupt = files_A[1], files_A[4], files_B[early_B]
    deleted.unlink()
    depth_path(no_depth).unlink()
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    return {deleted: "cannot read: No such file or directory",
            no_depth: f"missing depth map depths/{no_depth.stem}.png",
            corrupt: "DALI cannot decode it" if data.backend == "dali" else
            "cannot decode: OSError"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_mid_run_failure_with_skip_substitutes_and_counts(root: Path, backend: str) -> None:
    data = pipeline(root, backend, "data.on_bad_file=skip")
    broken = break_mid_run(data)
    files = {"A": data.splits["train"].A, "B": data.splits["train"].B}
    bad = {d: {files[d].index(p) for p in broken if p in files[d]} for d in "AB"}
    steps = data.epoch_length  # two epochs of A at batch 2
    refs = list(itertools.islice(iter(data.sampler()), 2 * steps))
    loaded = {"A": [], "B": []}
    for batch in itertools.islice(data.train_batches(), steps):
        for d in "AB":
            assert batch[d].image.isfinite().all() and batch[d].depth.isfinite().all()
            loaded[d] += batch[d].index.tolist()
    for d in "AB":
        wanted = [r.index_A if d == "A" else r.index_B for r in refs]
        for want, got in zip(wanted, loaded[d], strict=True):
            stand_in = next(j % len(files[d]) for j in itertools.count(want)
                            if j % len(files[d]) not in bad[d])
            assert got == stand_in  # the next readable file, whatever the backend
    recorded = dict(data.skipped_files["train"])
    assert recorded.keys() == broken.keys()
    for path, fragment in broken.items():
        assert fragment in recorded[path]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mid_run_failure_with_error_raises_naming_the_file(root: Path, backend: str) -> None:
    data = pipeline(root, backend)
    broken = break_mid_run(data)
    batches = data.train_batches()
    with pytest.raises(BadImageError) as caught:
        for _ in range(data.epoch_length):
            next(batches)
    assert any(f"{path}: " in str(caught.value) for path in broken), str(caught.value)


def test_validation_file_breaking_mid_run(root: Path) -> None:
    for policy in ("skip", "error"):
        data = pipeline(root, "torch", f"data.on_bad_file={policy}", "data.val_fraction=0.3")
        gone = data.splits["val"].A[0]
        moved = gone.rename(gone.with_suffix(".moved"))
        if policy == "skip":
            batches = list(data.eval_batches("val", "A"))
            assert sum(len(x) for x in batches) == 3
            assert batches[0].index.tolist()[0] == 1  # the next readable file stands in
            assert data.skipped_files["val"] == [(gone, "cannot read: No such file or directory")]
        else:
            with pytest.raises(BadImageError, match=re.escape(str(gone))):
                list(data.eval_batches("val", "A"))
        moved.rename(gone)
