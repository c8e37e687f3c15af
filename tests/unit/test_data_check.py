"""`liss data check`: every kind of broken dataset is named, with its path and the reason."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from liss.cli import main
from liss.data.check import check_dataset, probe_image
from tests.conftest import CHECK_SIZE

SIZE = CHECK_SIZE


@pytest.fixture
def root(good_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the good dataset, to break."""
    return shutil.copytree(good_dataset, tmp_path / "ds")


def check(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str]:
    """Run `liss data check` in-process: (exit code, printed report)."""
    code = main(["data", "check", str(root), *args])
    return code, capsys.readouterr().out


def test_report_api(good_dataset: Path) -> None:
    report = check_dataset(good_dataset)
    assert report.ok and report.problems == [] and report.warnings == []
    assert report.counts == {"trainA": 3, "trainB": 3, "testA": 2, "testB": 2}


def test_zero_byte_image(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = root / "trainA" / "empty.jpg"
    bad.write_bytes(b"")
    shutil.copy(root / "trainA" / "depths" / "00000.png", root / "trainA" / "depths" / "empty.png")
    code, out = check(capsys, root)
    assert code == 1
    assert f"{bad}: empty file (0 bytes)" in out
    assert out.rstrip().endswith("1 problem in 1 file")


def test_truncated_jpeg(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = root / "trainB" / "00001.jpg"
    bad.write_bytes(bad.read_bytes()[:-50])
    with Image.open(bad) as im:
        assert im.size == (SIZE, SIZE), "the header survives: only a full decode can tell"
    code, out = check(capsys, root)
    assert code == 1
    assert re.search(rf"{re.escape(str(bad))}: cannot decode: .*truncated", out, re.IGNORECASE)


def test_text_file_with_image_extension(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = root / "testA" / "x.png"
    bad.write_text("not an image\n")
    code, out = check(capsys, root)
    assert code == 1
    assert f"{bad}: not an image Pillow can identify" in out
    assert f"{bad}: missing depth map depths/x.png" in out
    assert "2 problems in 1 file" in out


def test_missing_depth_map(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "testA" / "depths" / "00001.png").unlink()
    code, out = check(capsys, root)
    assert code == 1
    assert f"{root / 'testA' / '00001.jpg'}: missing depth map depths/00001.png" in out


def test_undecodable_depth_map(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = root / "testB" / "depths" / "00000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, out = check(capsys, root)
    assert code == 1
    assert f"{bad}: bad depth map:" in out


def test_orphan_depth_map_is_a_warning(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orphan = root / "trainA" / "depths" / "ghost.png"
    shutil.copy(root / "trainA" / "depths" / "00000.png", orphan)
    code, out = check(capsys, root)
    assert code == 0
    assert f"warning: {orphan}: orphan depth map" in out
    assert "; 1 warning" in out and out.startswith("warning:")
    code, out = check(capsys, root, "--strict")  # a warning fails under --strict
    assert code == 1 and f"warning: {orphan}: orphan depth map" in out


def test_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(capsys, tmp_path / "nowhere")
    assert code == 1
    assert f"{tmp_path / 'nowhere'}: dataset root does not exist" in out


def test_root_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    code, out = check(capsys, tmp_path / "file")
    assert code == 1 and f"{tmp_path / 'file'}: not a directory" in out


def test_missing_split_folder(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(root / "testB")
    code, out = check(capsys, root)
    assert code == 1
    assert f"{root / 'testB'}: missing split folder" in out


def test_empty_split_folder(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(root / "trainA")
    (root / "trainA").mkdir()
    code, out = check(capsys, root)
    assert code == 1 and f"{root / 'trainA'}: split folder has no images" in out


def test_val_folders_come_in_pairs(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(root / "testA", root / "valA")
    code, out = check(capsys, root)
    assert code == 1 and f"{root / 'valB'}: missing: valA exists" in out
    shutil.copytree(root / "testB", root / "valB")
    code, out = check(capsys, root)
    assert code == 0 and "valA 2, valB 2" in out


def test_images_smaller_than_crop_are_warnings(root: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(capsys, root, "--crop-size", str(SIZE + 1))
    assert code == 0
    image = root / "trainA" / "00002.jpg"
    assert f"warning: {image}: {SIZE}x{SIZE} is smaller than crop size {SIZE + 1}" in out
    assert "; 10 warnings" in out
    code, out = check(capsys, root, "--crop-size", str(SIZE))
    assert code == 0 and "; 0 warnings" in out


def test_depth_is_required_as_auto_would_train_it(root: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(capsys, root)
    assert code == 0 and "10 depth maps" in out
    assert "every train/val image has a map, so auto trains the depth task" in out
    (root / "trainB" / "depths" / "00001.png").write_bytes(b"")  # a map that is there: checked
    code, out = check(capsys, root)
    assert code == 1 and "bad depth map: empty file" in out
    for split in ("trainA", "trainB", "testA", "testB"):
        shutil.rmtree(root / split / "depths")
    code, out = check(capsys, root)
    assert code == 0 and "depth not checked" in out
    assert ("depth: 6 of 6 train/val images have no map, so auto trains without the depth "
            f"task (compute them: liss data depth {root} --model FILE)") in out
    code, out = check(capsys, root, "--depth", "require")
    assert code == 1 and "10 problems in 10 files" in out
    code, out = check(capsys, root, "--no-depth")
    assert code == 0 and "depth not checked" in out and "auto trains" not in out


def test_problems_and_warnings_are_listed_together(root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (root / "trainA" / "00000.jpg").write_bytes(b"")
    (root / "trainB" / "depths" / "00000.png").unlink()
    code, out = check(capsys, root, "--crop-size", "64", "--depth", "require")
    lines = out.splitlines()
    assert code == 1
    assert lines[:2] == [f"{root / 'trainA' / '00000.jpg'}: empty file (0 bytes)",
                         f"{root / 'trainB' / '00000.jpg'}: missing depth map depths/00000.png"]
    assert lines[2].startswith("warning: ") and lines[-1] == "2 problems in 2 files"


def test_probe_image(good_dataset: Path, tmp_path: Path) -> None:
    assert probe_image(good_dataset / "trainA" / "00000.jpg") is None
    assert probe_image(good_dataset / "trainA" / "depths" / "00000.png") is None
    empty = tmp_path / "e.jpg"
    empty.write_bytes(b"")
    assert probe_image(empty) == "empty file (0 bytes)"
    assert probe_image(tmp_path / "missing.jpg") == "cannot read: No such file or directory"
