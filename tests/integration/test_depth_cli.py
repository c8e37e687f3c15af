"""`liss data depth` in real `python -m liss` processes: TorchScript and ONNX models end to end
(maps of the image's size, 16-bit, the model's values; `liss data check` then passes with depth
required), and a run SIGKILLed in the middle of writing a map, which the next run finishes."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liss.data.depth_maps import TMP_SUFFIX
from liss.data.images import read_image
from liss.data.layout import depth_path
from tests.depth_fixtures import (
    IMAGES,
    INPUT_SIZE,
    MEAN,
    STD,
    expected_row,
    export_onnx,
    export_torchscript,
    make_dataset,
)

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ["--input-size", str(INPUT_SIZE), "--mean", *map(str, MEAN), "--std", *map(str, STD),
           "--percentile", "100", "--batch-size", "2", "--device", "cpu"]


def _liss(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "liss", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_maps_from_a_model_file_pass_the_data_check(tmp_path: Path, fmt: str) -> None:
    images = make_dataset(tmp_path / "data")
    model = (export_torchscript(tmp_path / "m.pt") if fmt == "torchscript"
             else export_onnx(tmp_path / "m.onnx"))
    done = _liss("data", "depth", str(tmp_path / "data"), "--model", str(model), *OPTIONS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"computed {len(images)}, kept 0 existing, failed 0" in done.stdout
    assert f"{fmt} on cpu" in done.stdout.replace("CPUExecutionProvider", "cpu")
    assert re.search(rf"depth maps {len(images)}/{len(images)}, 0 failed", done.stderr)
    for image, (*_, (h, w)) in zip(images, IMAGES, strict=True):
        with Image.open(depth_path(image)) as im:
            assert im.mode.startswith("I;16") and im.size == (w, h)
        stored = read_image(depth_path(image), gray=True)[0, 0].numpy()
        want, interior = expected_row(w)
        tolerance = 2e-3 if w >= INPUT_SIZE else 1e-2
        assert np.abs(stored[interior] - want[interior]).max() < tolerance, image
    check = _liss("data", "check", str(tmp_path / "data"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(images)} depth maps; 0 warnings" in check.stdout


KILLED_RUN = textwrap.dedent("""
    import itertools, os, signal, sys
    from liss.cli import main
    from liss.data import depth_maps

    calls, real = itertools.count(1), depth_maps.save_png

    def save_png(values, target):
        if next(calls) == {kill_at}:  # half a PNG in the temporary file, then gone
            target.write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + b"\\0" * 100)
            os.kill(os.getpid(), signal.SIGKILL)
        real(values, target)

    depth_maps.save_png = save_png
    sys.exit(main(sys.argv[1:]))
""")


def test_a_run_killed_mid_write_is_finished_by_the_next(tmp_path: Path) -> None:
    root = tmp_path / "data"
    images = make_dataset(root)
    model = export_torchscript(tmp_path / "m.pt")
    args = ["data", "depth", str(root), "--model", str(model), *OPTIONS]
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN.format(kill_at=4), *args],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    maps = [p for p in images if depth_path(p).is_file()]
    assert 0 < len(maps) < len(images)
    for image in maps:  # every map that exists is whole
        h, w = read_image(image).shape[-2:]
        assert read_image(depth_path(image), gray=True).shape == (1, h, w)
    assert list(root.rglob(f"*{TMP_SUFFIX}"))  # the half-written one, under its temporary name

    again = _liss(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    found = re.search(r"computed (\d+), kept (\d+) existing, failed 0; removed (\d+) temporary",
                      again.stdout)
    assert found, again.stdout
    computed, kept, removed = map(int, found.groups())
    assert (computed, kept) == (len(images) - len(maps), len(maps)) and removed >= 1
    assert not list(root.rglob(f"*{TMP_SUFFIX}"))
    assert all(depth_path(p).is_file() for p in images)
    assert _liss("data", "check", str(root)).returncode == 0
