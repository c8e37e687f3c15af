"""A user's own dataset on the first try: a horse2zebra-style folder of non-square JPEG and PNG
photos of mixed sizes, no depth maps, trains with the default settings; asking for the depth
task on it is one line naming the first missing map and both fixes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY

SIZES = [(60, 40), (40, 56), (72, 48), (50, 50), (64, 36), (45, 70)]  # (width, height)


@pytest.fixture(scope="module")
def own_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own") / "horse2zebra"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for d in "AB":
            folder = root / f"{split}{d}"
            folder.mkdir(parents=True)
            for i in range(n):
                w, h = SIZES[i % len(SIZES)]
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                suffix = ".jpg" if i % 2 else ".png"
                Image.fromarray(pixels).save(folder / f"n0{i:04d}{suffix}")
    return root


def liss(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "liss", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.slow
def test_defaults_train_on_a_folder_without_depth(own_root: Path, tmp_path: Path) -> None:
    done = liss("train", f"data.root={own_root}", *TINY, "train.max_steps=4",
                f"run.dir={tmp_path / 'runs'}", "run.name=own", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert ("tasks: rotation, jigsaw, gray (auto: no depth task, 12 of 12 train/val images "
            f"have no depth map (first: {own_root / 'trainA' / 'depths' / 'n00000.png'}); "
            f"compute them with `liss data depth {own_root} --model FILE`)") in out
    saved = (tmp_path / "runs" / "own" / "config.yaml").read_text()
    assert "auxiliary_tasks:\n  - rotation\n  - jigsaw\n  - gray\n" in saved
    assert (tmp_path / "runs" / "own" / "generators.pt").is_file()


def test_explicit_depth_on_it_is_one_line(own_root: Path, tmp_path: Path) -> None:
    done = liss("train", f"data.root={own_root}", *TINY, "tasks.auxiliary_tasks=[depth]",
                f"run.dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line == (
        "liss: config error: tasks.auxiliary_tasks=['depth']: the depth task needs a map per "
        "image, but 12 of 12 train/val images have none (first: "
        f"{own_root / 'trainA' / 'depths' / 'n00000.png'}); drop the task "
        "(tasks.auxiliary_tasks=auto adds it only when every map is there) or compute the "
        f"maps: liss data depth {own_root} --model FILE")
    assert not (tmp_path / "runs").exists()  # refused before anything was written
