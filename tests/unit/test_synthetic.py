"""The built-in synthetic dataset: determinism, layout, depth/ground-truth alignment, safety."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from liss.data import synthetic
from liss.data.layout import depth_path, list_images

SEED, SIZE, N_TRAIN, N_TEST = 7, 48, 5, 3
SPLITS = ("trainA", "trainB", "testA", "testB")
FAR = round(255 * synthetic.Z_NEAR / synthetic.Z_FAR)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    synthetic.generate(out, n_train=N_TRAIN, n_test=N_TEST, size=SIZE, seed=SEED)
    return out


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def render(index: int, coat: str, size: int = 64) -> tuple[np.ndarray, ...]:
    return synthetic.render_scene(synthetic.scene_for(11, "train", "A", index), coat, size)


def windows_inside(mask: np.ndarray) -> np.ndarray:
    """3×3 windows lying entirely inside `mask` (shape of sliding_window_view output)."""
    return sliding_window_view(mask, (3, 3)).all(axis=(-2, -1))


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthetic.generate(again, n_train=N_TRAIN, n_test=N_TEST, size=SIZE, seed=SEED)
    assert files(again) == files(dataset)


def test_different_seed_gives_different_images(dataset: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthetic.generate(other, n_train=N_TRAIN, n_test=N_TEST, size=SIZE, seed=SEED + 1)
    a, b = files(dataset), files(other)
    images = [name for name in a if name.endswith(".jpg")]
    assert all(a[name] != b[name] for name in images)


def test_first_images_do_not_depend_on_dataset_size(dataset: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    synthetic.generate(small, n_train=3, n_test=N_TEST, size=SIZE, seed=SEED)
    big, few = files(dataset), files(small)
    assert len(list_images(small / "trainA")) == 3
    for name, data in few.items():
        if name != synthetic.MARKER:
            assert big[name] == data, name


def test_each_image_has_its_own_documented_generator() -> None:
    rng = np.random.default_rng([SEED, 1, 1, 4])  # seed, split "test", domain "B", index
    expected = synthetic.sample_scene(rng)
    scene = synthetic.scene_for(SEED, "test", "B", 4)
    assert scene.cam_height == expected.cam_height and scene.pitch == expected.pitch
    assert [t.center.tolist() for t in scene.things] == [t.center.tolist() for t in expected.things]


# ----------------------------------------------------------------------------- layout


def test_layout_counts_formats_and_sizes(dataset: Path) -> None:
    for split in SPLITS:
        images = list_images(dataset / split)
        n = N_TRAIN if split.startswith("train") else N_TEST
        assert [p.name for p in images] == [f"{i:05d}.jpg" for i in range(n)]
        for image in images:
            with Image.open(image) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (SIZE, SIZE))
            with Image.open(depth_path(image)) as d:
                assert (d.format, d.mode, d.size) == ("PNG", "L", (SIZE, SIZE))


def test_ground_truth_and_mask_for_every_test_image(dataset: Path) -> None:
    for domain, gt in (("A", "testA2B"), ("B", "testB2A")):
        stems = [p.stem for p in list_images(dataset / f"test{domain}")]
        gt_files = sorted(p for p in (dataset / "gt" / gt).iterdir() if p.is_file())
        assert [p.stem for p in gt_files] == stems
        assert [p.stem for p in sorted((dataset / "gt" / gt / "masks").iterdir())] == stems
        for p in gt_files:
            with Image.open(p) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "RGB", (SIZE, SIZE))
            with Image.open(p.parent / "masks" / p.name) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "L", (SIZE, SIZE))


def test_marker_records_params_and_counts(dataset: Path) -> None:
    marker = json.loads((dataset / synthetic.MARKER).read_text())
    assert marker["params"] == {"n_train": N_TRAIN, "n_test": N_TEST, "size": SIZE, "seed": SEED}
    assert marker["counts"]["trainB"] == N_TRAIN and marker["counts"]["gt/testB2A"] == N_TEST


# ----------------------------------------------------------------------------- alignment


@pytest.mark.parametrize("index", range(6))
def test_coats_differ_only_on_objects_and_share_depth(index: int) -> None:
    rgb_a, depth_a, mask_a = render(index, "A")
    rgb_b, depth_b, mask_b = render(index, "B")
    differs = (rgb_a != rgb_b).any(axis=-1)
    assert mask_a.any()
    assert np.array_equal(mask_a, mask_b) and np.array_equal(depth_a, depth_b)
    assert not (differs & ~mask_a).any(), "a pixel off the objects changed with the coat"
    assert differs.sum() >= 0.2 * mask_a.sum(), "stripes should cover a good part of objects"


@pytest.mark.parametrize("index", range(6))
def test_depth_is_aligned_with_objects_and_ground(index: int) -> None:
    scene = synthetic.scene_for(11, "train", "A", index)
    _, depth, mask = synthetic.render_scene(scene, "A", 64)
    _, ground, no_objects = synthetic.render_scene(dataclasses.replace(scene, things=()), "A", 64)
    assert not no_objects.any()
    # objects change depth exactly on their pixels, and always towards the camera
    assert (depth == ground)[~mask].all()
    assert (depth[mask] >= ground[mask]).all()
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = windows_inside(mask)
    assert (depth[inner] > ground[inner]).all()
    # top edge of each silhouette is nearer than what is just above it
    for col in np.flatnonzero(mask.any(axis=0) & ~mask[0]):
        top = int(np.argmax(mask[:, col]))
        assert depth[top, col] > depth[top - 1, col]
    # sky is the far plane; the ground recedes (x decreases) going up towards the horizon
    assert (depth[0][~mask[0]] == FAR).all()
    assert (np.diff(ground.astype(int), axis=0) >= 0).all()
    assert ground[-1, 0] > ground[ground.shape[0] // 2, 0] > FAR


def test_depth_decodes_to_the_loader_range() -> None:
    depths = np.stack([render(i, "A")[1] for i in range(6)]).astype(float)
    d = -np.log(depths / 255 + 1e-6)
    assert d.min() < 0.5 and 3.5 <= d.max() <= 4.0


def test_written_files_match_the_renderer(dataset: Path) -> None:
    for domain, other in (("A", "B"), ("B", "A")):
        for i in range(N_TEST):
            scene = synthetic.scene_for(SEED, "test", domain, i)
            rgb, depth, _ = synthetic.render_scene(scene, domain, SIZE)
            swapped = synthetic.render_scene(scene, other, SIZE)[0]
            image = dataset / f"test{domain}" / f"{i:05d}.jpg"
            gt = dataset / "gt" / f"test{domain}2{other}" / f"{i:05d}.png"
            assert np.array_equal(np.asarray(Image.open(gt)), swapped)
            assert np.array_equal(np.asarray(Image.open(depth_path(image))), depth)
            jpeg = np.asarray(Image.open(image)).astype(float)
            assert np.abs(jpeg - rgb).mean() < 3.0


def test_masks_are_the_object_pixels_where_the_coats_may_differ(dataset: Path) -> None:
    for split, d in (("train", "A"), ("test", "B")):
        other = "B" if d == "A" else "A"
        for i in range(N_TEST):
            scene = synthetic.scene_for(SEED, split, d, i)
            rgb, _, mask = synthetic.render_scene(scene, d, SIZE)
            written = np.asarray(Image.open(dataset / f"gt/{split}{d}2{other}/masks/{i:05d}.png"))
            assert written.dtype == np.uint8 and set(np.unique(written)) <= {0, 255}
            assert np.array_equal(written == 255, mask)
            truth = np.asarray(Image.open(dataset / f"gt/{split}{d}2{other}/{i:05d}.png"))
            differs = (truth != synthetic.render_scene(scene, d, SIZE)[0]).any(-1)
            assert differs.any() and not (differs & ~mask).any()
            assert np.array_equal(rgb, synthetic.render_scene(scene, d, SIZE)[0])


def test_b_coat_is_striped() -> None:
    variance = {"A": 0.0, "B": 0.0}
    for i in range(8):
        for coat in variance:
            rgb, _, mask = render(i, coat)
            local = sliding_window_view(rgb.mean(axis=-1), (3, 3)).var(axis=(-2, -1))
            variance[coat] += local[windows_inside(mask)].sum()
    assert variance["B"] > 4 * variance["A"]


def test_render_rejects_unknown_coat() -> None:
    with pytest.raises(ValueError, match="coat"):
        render(0, "C")


# ----------------------------------------------------------------------------- safety


def test_is_complete_detects_missing_pieces(dataset: Path, tmp_path: Path) -> None:
    assert synthetic.is_complete(dataset)
    assert not synthetic.is_complete(tmp_path / "nowhere")
    for i, name in enumerate([synthetic.MARKER, "trainA/depths/00001.png", "testB/00002.jpg",
                              "gt/testA2B/00000.png", "gt/trainB2A/masks/00003.png"]):
        copy = tmp_path / f"copy{i}"
        shutil.copytree(dataset, copy)
        (copy / name).unlink()
        assert not synthetic.is_complete(copy), name


def test_a_set_without_masks_is_incomplete_and_replaced(tmp_path: Path) -> None:
    """Sets written before the masks existed: `--if-missing` regenerates them (same images)."""
    out = tmp_path / "ds"
    synthetic.generate(out, n_train=2, n_test=1, size=16)
    before = files(out)
    for folder in (out / "gt").iterdir():
        shutil.rmtree(folder / "masks")
    assert not synthetic.is_complete(out)
    synthetic.generate(out, n_train=2, n_test=1, size=16)
    assert synthetic.is_complete(out) and files(out) == before


def test_regenerating_replaces_a_complete_dataset(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    synthetic.generate(out, n_train=4, n_test=1, size=16)
    summary = synthetic.generate(out, n_train=2, n_test=1, size=16)
    assert len(list_images(out / "trainA")) == 2 and synthetic.is_complete(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    text = str(summary)
    assert str(out.resolve()) in text and "trainA 2" in text and "seed 0" in text


def test_empty_target_folder_is_used(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    synthetic.generate(out, n_train=1, n_test=1, size=16)
    assert synthetic.is_complete(out)


def test_refuses_a_foreign_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=str(out)):
        synthetic.generate(out, n_train=1, n_test=1, size=16)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_refuses_a_file(tmp_path: Path) -> None:
    out = tmp_path / "file"
    out.write_text("")
    with pytest.raises(FileExistsError, match=str(out)):
        synthetic.generate(out, n_train=1, n_test=1, size=16)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               error: type[BaseException]) -> None:
    calls = itertools.count()
    write = synthetic._write_image

    def failing(*args: object, **kwargs: object) -> None:
        if next(calls) == 5:
            raise error("stop")
        write(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_write_image", failing)
    with pytest.raises(error):
        synthetic.generate(tmp_path / "ds", n_train=6, n_test=2, size=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_train": 0}, "n_train"), ({"n_test": -1}, "n_test"), ({"size": 15}, "size"),
    ({"seed": -1}, "seed")])
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic.generate(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


# ----------------------------------------------------------------------------- permissions


def test_dataset_folder_is_readable_by_others(dataset: Path) -> None:
    assert dataset.stat().st_mode & 0o755 == 0o755
