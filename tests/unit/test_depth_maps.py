"""`liss data depth` in-process: the encoding, atomic writes, which maps are computed, a
TorchScript model end to end (values in closed form, read back by the training loader), a run
that fails part-way and resumes, unreadable images, and every bad `--model` as one line.
(The CLI in real processes, ONNX, and a SIGKILL mid-write: integration/test_depth_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from liss.cli import main
from liss.config import ConfigError
from liss.data import depth_maps
from liss.data.augment import Preprocess
from liss.data.depth_maps import FLOOR, TMP_SUFFIX, Options, compute_depth_maps, normalise, quantise
from liss.data.depth_model import DepthModel, DepthModelError, load_depth_model
from liss.data.images import read_image
from liss.data.layout import depth_path
from liss.data.sampler import SampleRef
from liss.data.torch_backend import TrainDataset
from tests.depth_fixtures import (
    IMAGES,
    INPUT_SIZE,
    MEAN,
    STD,
    RampModel,
    expected_row,
    export_onnx,
    export_torchscript,
    make_dataset,
)

OPTS = Options(input_size=INPUT_SIZE, mean=MEAN, std=STD, percentile=100, batch_size=3)


def _temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{TMP_SUFFIX}"))


# ---------------------------------------------------------------------- encoding


def encode(pred: np.ndarray, output: str, percentile: float) -> np.ndarray:
    return quantise(normalise(pred, output, percentile))


def test_inverse_depth_is_scaled_by_its_percentile_and_clipped() -> None:
    pred = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0]])
    values = encode(pred, "inverse-depth", 100)
    assert values.dtype == np.uint16
    assert values.tolist() == [[1, 1, round(65535 / 4), round(65535 / 2), 65535]]
    at_half = encode(pred, "inverse-depth", 75)  # 75th percentile = 1.0: 2.0 saturates
    assert at_half.tolist() == [[1, 1, round(65535 / 2), 65535, 65535]]
    assert round(FLOOR * 65535) == 1  # the farthest a map stores


def test_depth_output_is_inverted_and_non_positive_depth_is_far() -> None:
    values = encode(np.array([[1.0, 2.0, 4.0, 0.0, -3.0]]), "depth", 100)
    assert values.tolist() == [[65535, round(65535 / 2), round(65535 / 4), 1, 1]]


@pytest.mark.parametrize(("pred", "why"), [(np.array([[1.0, np.nan]]), "1 non-finite"),
                                           (np.zeros((2, 2)), "no positive inverse depth")])
def test_unusable_outputs_are_refused(pred: np.ndarray, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalise(pred, "inverse-depth", 99)


# ---------------------------------------------------------------------- atomic writes


def test_a_write_that_breaks_leaves_the_old_map_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "depths" / "x.png"
    depth_maps.write_map(target, np.full((4, 5), 1000, np.uint16))
    before = target.read_bytes()

    def breaks(values: np.ndarray, tmp: Path) -> None:
        tmp.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(depth_maps, "save_png", breaks)
    with pytest.raises(OSError, match="No space"):
        depth_maps.write_map(target, np.full((4, 5), 2000, np.uint16))
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["x.png"]


# ---------------------------------------------------------------------- which maps


def test_split_selection(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    names = lambda splits: [f.name for f in depth_maps.split_folders(tmp_path, splits)]  # noqa: E731
    assert names(()) == ["trainA", "trainB", "testA", "testB"]
    assert names(("train", "testB")) == ["trainA", "trainB", "testB"]
    assert names(("testB", "testB")) == ["testB"]
    with pytest.raises(ConfigError, match="--splits='valA': no folder"):
        names(("valA",))
    with pytest.raises(ConfigError, match="--splits='val': no valA or valB"):
        names(("val",))
    with pytest.raises(ConfigError, match="--splits='trainC': one of trainA"):
        names(("trainC",))
    with pytest.raises(ConfigError, match=r"ROOT=.*no such dataset folder"):
        depth_maps.split_folders(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"ROOT=.*no split folder"):
        depth_maps.split_folders(tmp_path / "trainA")


# ---------------------------------------------------------------------- end to end


@pytest.mark.parametrize("depth", [False, True], ids=["inverse-depth", "depth"])
def test_torchscript_maps_encode_the_models_inverse_depth(tmp_path: Path, depth: bool) -> None:
    images = make_dataset(tmp_path / "data")
    model = load_depth_model(export_torchscript(tmp_path / "m.pt", RampModel(depth)), "cpu")
    opts = Options(**{**OPTS.__dict__, "output": "depth" if depth else "inverse-depth"})
    summary = compute_depth_maps(tmp_path / "data", model, opts, progress=False)
    assert (summary.computed, summary.kept, summary.failed) == (len(images), 0, [])
    for image, (*_, (h, w)) in zip(images, IMAGES, strict=True):
        with Image.open(depth_path(image)) as im:
            assert im.mode.startswith("I;16") and im.size == (w, h)  # 16-bit gray, image size
        stored = read_image(depth_path(image), gray=True)[0].numpy()  # what training reads
        assert np.ptp(stored, axis=0).max() < 2e-4  # constant down each column
        want, interior = expected_row(w)
        tolerance = 2e-3 if w >= INPUT_SIZE else 1e-2  # antialiased downscaling blurs a bit
        assert np.abs(stored[0][interior] - want[interior]).max() < tolerance, image
        assert np.abs(stored[0] - want).max() < 0.05  # the borders, where filters differ


def test_the_training_loader_reads_the_maps(tmp_path: Path) -> None:
    images = make_dataset(tmp_path)
    model = load_depth_model(export_torchscript(tmp_path / "m.pt"), "cpu")
    compute_depth_maps(tmp_path, model, OPTS, progress=False)
    trainA = [p for p in images if p.parent.name == "trainA"]
    ds = TrainDataset(trainA, trainA, prep=Preprocess("resize_and_crop", 20, 16), flip=False,
                      with_depth=True)
    _, depth, _, _ = ds[SampleRef(0, 0, 0, 1, 1)]["A"]
    assert depth.shape == (1, 16, 16)
    assert (depth[0, :, 1:] > depth[0, :, :-1]).all()  # the ramp: nearer to the right


class _FailsOnCall(nn.Module):
    """The ramp model, raising on its `n`-th call: a run that breaks part-way."""

    def __init__(self, n: int):
        super().__init__()
        self.inner, self.n, self.calls = RampModel(), n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("CUDA out of memory (simulated)")
        return self.inner(x)


def test_a_run_that_breaks_keeps_whole_maps_and_the_next_computes_the_rest(
        tmp_path: Path) -> None:
    images = make_dataset(tmp_path)
    breaking = DepthModel(tmp_path / "m.pt", "torchscript", torch.device("cpu"), "cpu",
                          _FailsOnCall(2))
    with pytest.raises(DepthModelError, match=r"m.pt: the model failed on an input of shape "
                       r"\[3, 3, 16, 16\] \(CUDA out of memory"):
        compute_depth_maps(tmp_path, breaking, OPTS, progress=False)
    done = [p for p in images if depth_path(p).is_file()]
    assert done == images[:3]  # the first batch
    assert _temporaries(tmp_path) == []
    model = load_depth_model(export_torchscript(tmp_path / "m.pt"), "cpu")
    again = compute_depth_maps(tmp_path, model, OPTS, progress=False)
    assert (again.computed, again.kept, again.failed) == (len(images) - 3, 3, [])
    assert all(depth_path(p).is_file() for p in images)


def test_existing_maps_are_kept_unless_broken_or_overwritten(tmp_path: Path) -> None:
    images = make_dataset(tmp_path)
    model = load_depth_model(export_torchscript(tmp_path / "m.pt"), "cpu")
    compute_depth_maps(tmp_path, model, OPTS, progress=False)
    depth_path(images[0]).write_bytes(depth_path(images[0]).read_bytes()[:40])  # truncated
    depth_path(images[1]).unlink()
    stale = depth_path(images[2]).with_name(f".a2.png.0000{TMP_SUFFIX}")
    stale.write_bytes(b"half")  # what a killed run leaves
    again = compute_depth_maps(tmp_path, model, OPTS, progress=False)
    assert (again.computed, again.replaced, again.kept) == (2, 1, len(images) - 2)
    assert again.removed_temporaries == 1 and _temporaries(tmp_path) == []
    assert "computed 2, kept 5 existing, failed 0 (1 computed in place of undecodable" in str(
        again)
    over = Options(**{**OPTS.__dict__, "overwrite": True, "splits": ("trainB",)})
    assert compute_depth_maps(tmp_path, model, over, progress=False).computed == 2


def test_an_unreadable_image_is_reported_and_the_others_computed(tmp_path: Path) -> None:
    images = make_dataset(tmp_path)
    bad = tmp_path / "trainA" / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    empty = tmp_path / "testB" / "empty.png"
    empty.write_bytes(b"")
    model = load_depth_model(export_torchscript(tmp_path / "m.pt"), "cpu")
    summary = compute_depth_maps(tmp_path, model, OPTS, progress=False)
    assert summary.computed == len(images) and summary.kept == 0
    assert sorted(summary.failed) == [(empty, "empty file (0 bytes)"),
                                      (bad, "not an image Pillow can identify")]
    assert all(depth_path(p).is_file() for p in images)
    assert not depth_path(bad).exists()


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_dataset(tmp_path / "data")
    model = export_torchscript(tmp_path / "m.pt")
    args = ["data", "depth", str(tmp_path / "data"), "--model", str(model),
            "--input-size", str(INPUT_SIZE)]
    assert main(args) == 0
    assert "computed 7, kept 0 existing, failed 0" in capsys.readouterr().out
    (tmp_path / "data" / "trainB" / "bad.png").write_bytes(b"x")
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "trainB/bad.png: not an image Pillow can identify" in captured.err
    assert "computed 0, kept 7 existing, failed 1" in captured.out
    assert main([*args, "--std", "1", "0", "1"]) == 2
    assert "--std=[1.0, 0.0, 1.0]: three positive numbers" in capsys.readouterr().err
    assert main([*args[:4], str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt: no such model file" in capsys.readouterr().err


# ---------------------------------------------------------------------- bad models


def _error(path: Path) -> str:
    with pytest.raises(DepthModelError) as e:
        load_depth_model(path, "cpu")
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    return str(e.value)


def test_bad_model_files_are_one_line_naming_the_file(tmp_path: Path) -> None:
    assert "no such model file" in _error(tmp_path / "missing.pt")
    (tmp_path / "m.h5").write_bytes(b"x")
    assert "unknown model format; expected a TorchScript file (.pt" in _error(tmp_path / "m.h5")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert "not a TorchScript module" in _error(tmp_path / "junk.pt")
    torch.save(RampModel().state_dict(), tmp_path / "weights.pt")
    assert "not a TorchScript module" in _error(tmp_path / "weights.pt")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert "not a readable ONNX model" in _error(tmp_path / "junk.onnx")


class _TwoChannels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2]


class _Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, 0], x[:, 1]


@pytest.mark.parametrize(("net", "why"), [
    (_TwoChannels(), r"returned shape \[3, 2, 16, 16\] for a batch of 3; expected one tensor "
                     r"\[N,1,H,W\] or \[N,H,W\] with N = 3"),
    (_Pair(), r"returned tuple; expected one tensor \[N,1,H,W\] or \[N,H,W\]")])
def test_a_wrong_output_shape_stops_the_run_before_any_map(tmp_path: Path, net: nn.Module,
                                                           why: str) -> None:
    images = make_dataset(tmp_path / "data")
    model = load_depth_model(export_torchscript(tmp_path / "m.pt", net), "cpu")
    with pytest.raises(DepthModelError, match=f"m.pt: the model {why}"):
        compute_depth_maps(tmp_path / "data", model, OPTS, progress=False)
    assert not any(depth_path(p).exists() for p in images)


def test_onnx_static_dimensions_set_the_input(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data")
    model = load_depth_model(export_onnx(tmp_path / "m.onnx", dynamic=False), "cpu")
    assert (model.fixed_batch, model.fixed_size) == (1, (INPUT_SIZE, INPUT_SIZE))
    auto = Options(mean=MEAN, std=STD, percentile=100, batch_size=4)
    summary = compute_depth_maps(tmp_path / "data", model, auto, progress=False)
    assert (summary.input_size, summary.batch_size, summary.computed) == (INPUT_SIZE, 1, 7)
    with pytest.raises(ConfigError, match=f"--input-size=32: .*m.onnx takes {INPUT_SIZE}x"):
        compute_depth_maps(tmp_path / "data", model, Options(input_size=32), progress=False)
