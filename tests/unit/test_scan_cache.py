"""The start-up scan decodes each file once: verdicts are kept per (path, size, mtime), and
validation is carved only after unusable files are gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from liss import config
from liss.data import scan_cache
from liss.data.layout import split_train_val
from liss.data.pipeline import InputPipeline, build_pipeline


@pytest.fixture
def root(synth_root: Path, tmp_path: Path) -> Path:
    return shutil.copytree(synth_root, tmp_path / "ds")


def pipeline(root: Path, *extra: str) -> InputPipeline:
    return build_pipeline(config.load(None, [
        f"data.root={root}", f"run.dir={root.parent / 'runs'}", "data.num_workers=0",
        "data.load_size=40", "data.crop_size=32", "train.device=cpu", *extra]))


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the scan really decodes (the cache answers the others)."""
    seen: list[Path] = []
    real = scan_cache.probe_file

    def counting(path: Path):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(scan_cache, "probe_file", counting)
    return seen


def cache_file(root: Path) -> Path:
    path = scan_cache.cache_path("auto", root.parent / "runs", root)
    assert path is not None
    return path


def test_a_restart_decodes_nothing(root: Path, decoded: list[Path]) -> None:
    pipeline(root)
    images = 2 * (10 + 4)  # train + test images per domain, each with its depth map
    assert len(decoded) == 2 * images and cache_file(root).is_file()
    decoded.clear()
    pipeline(root)
    assert decoded == []


def test_only_changed_and_new_files_are_decoded_again(root: Path, decoded: list[Path]) -> None:
    pipeline(root)
    decoded.clear()
    changed = root / "trainA" / "00002.jpg"
    Image.new("RGB", (48, 40), (200, 10, 10)).save(changed)
    new = root / "trainB" / "09999.jpg"
    shutil.copy(root / "trainB" / "00000.jpg", new)
    shutil.copy(root / "trainB" / "depths" / "00000.png", root / "trainB" / "depths" / "09999.png")
    pipeline(root)
    assert sorted(decoded) == sorted([changed, new, root / "trainB" / "depths" / "09999.png"])


def test_a_file_broken_after_it_was_cached_is_caught(root: Path) -> None:
    pipeline(root)
    broken = root / "trainA" / "00003.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # size and mtime change
    with pytest.raises(config.ConfigError, match=f"{broken}: cannot decode"):
        pipeline(root)


def test_an_unreadable_cache_is_rebuilt(root: Path, decoded: list[Path]) -> None:
    pipeline(root)
    cache_file(root).write_text("{not json")
    decoded.clear()
    pipeline(root)
    assert decoded and json.loads(cache_file(root).read_text())["version"] == scan_cache.VERSION


def test_scan_cache_none_writes_nothing(root: Path, decoded: list[Path]) -> None:
    pipeline(root, "data.scan_cache=none")
    first = len(decoded)
    pipeline(root, "data.scan_cache=none")
    assert len(decoded) == 2 * first and not (root.parent / "runs").exists()


def test_an_explicit_cache_path_is_used(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "scan.json"
    pipeline(root, f"data.scan_cache={target}")
    assert json.loads(target.read_text())["root"] == str(root.resolve())


def test_validation_is_carved_after_unusable_files_leave(root: Path) -> None:
    """Three train images per domain, one held out; when the file the carve would hold out
    is unusable, the carve takes another instead of coming out empty."""
    for d in "AB":
        for image in sorted((root / f"train{d}").glob("*.jpg"))[3:]:
            image.unlink()
    files = sorted((root / "trainA").glob("*.jpg"))
    held = split_train_val(files, 0.34)[1][0]
    held.write_bytes(b"")
    data = pipeline(root, "data.on_bad_file=skip", "data.val_fraction=0.34")
    assert data.skipped_files["train"] == [(held, "empty file (0 bytes)")]
    assert len(data.splits["val"].A) == 1 and len(data.splits["train"].A) == 1
    assert held not in data.splits["val"].A + data.splits["train"].A
