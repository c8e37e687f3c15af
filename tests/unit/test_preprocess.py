"""`data.preprocess`: each mode's geometry on a 400x300 image, the crop's region and its depth
alignment, the generator stride it rounds to, the config checks, and the
start-up check that a batch of several images holds one size. (Both backends per mode:
test_backends_agree.py; rotation of non-square images: test_tasks.py; training on mixed
sizes: integration/test_preprocess_train.py.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liss import config
from liss.config import ConfigError
from liss.data.augment import Geometry, Preprocess, center_params, train_params
from liss.data.images import BadImageError, image_size
from liss.data.pipeline import build_pipeline
from liss.data.torch_backend import load_sample
from liss.nn.generator import Encoder, ImageHead
from liss.nn.sizes import STRIDE

W, H = 400, 300
# mode -> {(load, crop): (training crop, validation crop)}, (h, w): the table of docs/data.md
TABLE = {
    "resize_and_crop": {(286, 256): ((256, 256), (256, 256)), (72, 64): ((64, 64), (64, 64))},
    "scale_width_and_crop": {(286, 256): ((256, 256), (256, 256)),
                             (72, 64): ((64, 64), (64, 64))},
    "crop": {(286, 256): ((256, 256), (256, 256)), (72, 64): ((64, 64), (64, 64))},
    "none": {(286, 256): ((300, 400), (300, 400)), (72, 64): ((300, 400), (300, 400))},
}
RESIZED = {  # (h, w) the 400x300 image is resampled to before the crop
    ("resize_and_crop", 286): (286, 286), ("resize_and_crop", 72): (72, 72),
    ("scale_width_and_crop", 286): (256, 286),  # 286 * 3/4 = 214 < 256: never below the crop
    ("scale_width_and_crop", 72): (64, 72),  # 72 * 3/4 = 54 < 64
    ("crop", 286): (300, 400), ("crop", 72): (300, 400),
    ("none", 286): (300, 400), ("none", 72): (300, 400),
}


@pytest.fixture(scope="module")
def coords(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 400x300 PNG whose red channel is the column and green the row, with a 16-bit depth
    map of the column."""
    folder = tmp_path_factory.mktemp("coords")
    (folder / "depths").mkdir()
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x * 255 / (W - 1), y * 255 / (H - 1), np.zeros_like(x)], -1)
    Image.fromarray(rgb.round().astype(np.uint8)).save(folder / "c.png")
    Image.fromarray((x * 65535 / (W - 1)).round().astype(np.uint16)).save(
        folder / "depths" / "c.png")
    return folder / "c.png"


@pytest.mark.parametrize("mode", TABLE)
@pytest.mark.parametrize("sizes", [(286, 256), (72, 64)], ids=["default", "quickstart"])
def test_output_sizes_of_a_400x300_image(coords: Path, mode: str, sizes) -> None:
    prep = Preprocess(mode, *sizes)
    geometry = prep.geometry(H, W)
    assert geometry.resized == RESIZED[mode, sizes[0]]
    train, val = TABLE[mode][sizes]
    for place, want in ((lambda g: train_params(7, g, True), train), (center_params, val)):
        image, depth = load_sample(coords, True, prep, place)
        assert image.shape == (3, *want) and depth.shape == (1, *want)


def source_coordinate(offset: int, n: int, src: int, resized: int, flip: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Where output pixels 0..n-1 of a crop at `offset` of an axis resampled from `src` to
    `resized` pixels come from, in [0, 1] of the source axis; and a mask of those away from
    the borders, where the resampling filter sees only the ramp."""
    j = np.arange(n)[::-1] if flip else np.arange(n)
    u = (offset + j + 0.5) * src / resized - 0.5
    return u / (src - 1), (u > 2) & (u < src - 3)


@pytest.mark.parametrize("mode", TABLE)
def test_the_crop_is_the_box_of_its_params_and_depth_follows(coords: Path, mode: str) -> None:
    """Centre crops (validation) and keyed, flipped crops (training): the red and green
    channels say which source pixels each output pixel comes from, the depth map agrees."""
    prep = Preprocess(mode, 286, 256)
    geometry = prep.geometry(H, W)
    flipped = next(k for k in itertools.count() if train_params(k, geometry, True).flip)
    for params in (center_params(geometry), train_params(flipped, geometry, True)):
        image, depth = load_sample(coords, True, prep, lambda g, p=params: p)
        (rh, rw), (ch, cw) = geometry.resized, geometry.crop
        col, inside_x = source_coordinate(params.x, cw, W, rw, params.flip)
        row, inside_y = source_coordinate(params.y, ch, H, rh, False)
        red, green = (image[0] + 1) / 2, (image[1] + 1) / 2
        tol = 3e-3  # 8-bit channels
        assert (red[:, inside_x] - torch.from_numpy(col[inside_x]).float()).abs().max() < tol
        assert (green[inside_y] - torch.from_numpy(row[inside_y]).float()[:, None]
                ).abs().max() < tol
        assert (depth[0] - red).abs().max() < 0.01  # the depth map has the image's geometry
    if mode in ("crop", "none"):  # no resampling: the very pixels of the box
        params = center_params(geometry)
        image, _ = load_sample(coords, False, prep, center_params)
        assert round(float((image[0, 0, 0] + 1) / 2 * (W - 1))) == params.x
        assert round(float((image[1, 0, 0] + 1) / 2 * (H - 1))) == params.y


def test_none_crops_to_the_generator_stride_and_keeps_it() -> None:
    prep = Preprocess("none", 286, 16)
    assert prep.geometry(301, 403) == Geometry((301, 403), (300, 400))
    assert prep.geometry(299, 401).crop == (296, 400)
    offsets = {(p.y, p.x) for p in (train_params(k, prep.geometry(301, 403), False)
                                    for k in range(200))}
    assert offsets == {(y, x) for y in range(2) for x in range(4)}  # the whole room
    encoder, decoder = Encoder(4, 0, "instance"), ImageHead(4, 0, "instance", 3, True)
    for h, w in ((5 * STRIDE, 7 * STRIDE), (5 * STRIDE + 2, 7 * STRIDE)):
        out = decoder(encoder(torch.zeros(1, 3, h, w))).shape[-2:]
        assert (out == (h, w)) == (h % STRIDE == 0 and w % STRIDE == 0)


def test_images_smaller_than_the_crop_are_scaled_up_under_crop_and_none() -> None:
    for mode in ("crop", "none"):
        geometry = Preprocess(mode, 286, 64).geometry(30, 50)
        assert geometry.resized == (64, 107)  # short side 64, aspect kept
    assert Preprocess("crop", 286, 64).geometry(30, 50).crop == (64, 64)
    assert Preprocess("none", 286, 64).geometry(30, 50).crop == (64, 104)


def test_image_size_reads_the_header_with_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displayed 30 wide, 40 high
    Image.new("RGB", (40, 30)).save(tmp_path / "r.jpg", exif=exif)
    Image.new("RGB", (40, 30)).save(tmp_path / "p.png")
    assert image_size(tmp_path / "r.jpg") == (40, 30)
    assert image_size(tmp_path / "p.png", (tmp_path / "p.png").read_bytes()) == (30, 40)
    (tmp_path / "x.png").write_text("not pixels")
    with pytest.raises(BadImageError, match="not an image Pillow can identify"):
        image_size(tmp_path / "x.png")


def test_preprocess_config() -> None:
    cfg = config.load(None, ["data.preprocess=crop", "data.crop_size=300"])
    assert cfg.data.preprocess == "crop"  # crop and none do not read load_size
    with pytest.raises(ConfigError, match=r"data.crop_size=300: must be <= data.load_size "
                                          r"\(286\) with data.preprocess=scale_width_and_crop"):
        config.load(None, ["data.preprocess=scale_width_and_crop", "data.crop_size=300"])
    with pytest.raises(ConfigError, match="did you mean crop"):
        config.load(None, ["data.preprocess=crops"])


# --------------------------------------------------------------- mixed sizes under `none`

@pytest.fixture
def mixed_root(tmp_path: Path) -> Path:
    """trainA and valA hold 48x40 and 60x36 images (wide), B only 40x48 (tall)."""
    sizes = {"A": [(48, 40), (48, 40), (61, 37)], "B": [(40, 48), (40, 48), (40, 48)]}
    for dom, dims in sizes.items():
        for split in ("train", "val"):
            (tmp_path / f"{split}{dom}").mkdir()
            for i, (w, h) in enumerate(dims):
                Image.new("RGB", (w, h), (40 * i, 90, 200)).save(
                    tmp_path / f"{split}{dom}" / f"{i}.png")
    return tmp_path


def mixed(root: Path, *extra: str):
    return build_pipeline(config.load(None, [
        f"data.root={root}", "data.preprocess=none", "data.crop_size=32", "data.backend=torch",
        "data.num_workers=0", "tasks.auxiliary_tasks=rotation", *extra]))


def test_a_batch_of_mixed_sizes_is_refused_naming_two_files(mixed_root: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        mixed(mixed_root, "data.batch_size=2")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("data.batch_size=2: ")
    assert f"{mixed_root / 'trainA' / '0.png'} comes out 48x40" in message
    assert f"{mixed_root / 'trainA' / '2.png'} 60x36" in message  # 61x37 cropped to 4s
    assert "data.batch_size=1" in message and "data.preprocess" in message


def test_batches_of_one_train_and_validation_groups_sizes(mixed_root: Path) -> None:
    data = mixed(mixed_root, "data.batch_size=1")
    shapes = {tuple(b.A.image.shape[-2:]) for b in itertools.islice(data.train_batches(), 6)}
    assert shapes <= {(40, 48), (36, 60)}
    val = list(data.eval_batches("val", "A", batch_size=4))
    assert [tuple(x.image.shape) for x in val] == [(2, 3, 40, 48), (1, 3, 36, 60)]
    assert sorted(i for x in val for i in x.index.tolist()) == [0, 1, 2]
    assert mixed(mixed_root, "data.preprocess=crop", "data.batch_size=2").shapes == {}
