"""Training on a folder of non-square, mixed-size JPEG and PNG photos: scale_width_and_crop
(square crops of batch 2) and none (whole images, one per batch, SSGAN rotation heads on
discriminators that see A and B images of different sizes), then `liss eval` on the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liss import config
from liss.cli import main
from liss.eval.evaluate import evaluate

SIZES = {"A": [(60, 44, "jpg"), (52, 40, "png"), (70, 48, "jpg"), (61, 45, "png")],
         "B": [(44, 60, "png"), (48, 48, "jpg"), (57, 41, "png"), (40, 66, "jpg")]}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smooth random photos, w x h as listed, in train and test folders; no depth maps."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for dom, sizes in SIZES.items():
        for split in ("train", "test"):
            (root / f"{split}{dom}").mkdir()
            for i, (w, h, ext) in enumerate(sizes):
                small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
                image = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
                image.save(root / f"{split}{dom}" / f"{i}.{ext}")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("mode, extra", [
    ("scale_width_and_crop", ["data.batch_size=2"]),
    ("none", ["data.batch_size=1", "model.D_rotation=true"]),
])
def test_training_on_non_square_mixed_size_photos(photos: Path, tmp_path: Path, mode: str,
                                                  extra: list[str]) -> None:
    from tests.conftest import TINY

    overrides = [*TINY, *extra, f"data.root={photos}", f"data.preprocess={mode}",
                 "tasks.auxiliary_tasks=[rotation,jigsaw,gray]", "data.val_fraction=0.5",
                 f"run.dir={tmp_path}", "run.name=p", "train.max_steps=2",
                 "tracking.uri=none"]
    assert main(["train", *overrides]) == 0
    run = config.load(None, overrides).run_dir
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    (grid,) = (run / "grids").iterdir()
    assert grid.name == "step_2.png"
    assert Image.open(grid).size[0] > 2 * 32  # a column per sample, whatever their sizes
    report = evaluate(run / "checkpoints" / "latest.pt", photos)
    for d in "AB":
        for key in ("rotation_acc", "jigsaw_acc", "gray_loss", "cycle_l1"):
            assert np.isfinite(report["metrics"][f"test/{d}/{key}"]), (mode, d, key)
