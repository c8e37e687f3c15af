"""`liss translate` on a really trained (tiny) model: every image of odd formats and sizes,
names and sizes kept, outputs equal to the model's own translation, tiling and padding
checked against the untiled network, the contact sheet, and the one-line errors. (What
needs no trained model: unit/test_translate_without_a_model.py.)"""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from liss import checkpoint, config
from liss.cli import main
from liss.eval import tiling
from liss.eval.generators import load_translator
from liss.eval.translate import load_input, to_uint8
from liss.model import LissModel

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


@pytest.fixture
def trained(tiny_run: Path) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def odd_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grayscale, RGBA, 16-bit, CMYK, non-square, 1x1 and a broken file."""
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (37, 53), dtype=np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), "RGBA").save(
        folder / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (33, 17), dtype=np.uint16)).save(folder / "deep.png")
    Image.fromarray(rng.integers(0, 256, (24, 40, 4), dtype=np.uint8), "CMYK").save(
        folder / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)).save(folder / "dot.png")
    Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(folder / "wide.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def generator(run: Path, domain: str) -> nn.Module:
    """G_domain of the checkpoint, loaded the trainer's way (independent of liss.eval)."""
    state = checkpoint.load(run / "checkpoints" / "latest.pt")
    model = LissModel(config.from_dict(state["config"]))
    model.G[domain].load_state_dict(state["models"][f"G_{domain}"])
    return model.G[domain].eval()


def test_every_image_translated_with_its_name_and_size(trained: Path, odd_inputs: Path,
                                                       tmp_path: Path, capsys) -> None:
    """(wide.jpg, 70 px wide, goes through the tiled path.)"""
    out = tmp_path / "out"
    code = main(["translate", "--checkpoint", str(trained / "checkpoints" / "latest.pt"),
                 "--input", str(odd_inputs), "--output", str(out), "--direction", "both",
                 "--side-by-side", "--batch-size", "2", "--tile", "32", "--overlap", "8"])
    assert code == 1  # one file was unreadable; every other one was translated
    err = capsys.readouterr().err
    assert f"skipped {odd_inputs / 'broken.jpg'}: not an image" in err
    good = sorted(p for p in odd_inputs.iterdir() if p.name != "broken.jpg")
    for direction in ("AtoB", "BtoA"):
        for src in good:
            written = Image.open(out / direction / src.name)
            assert written.size == Image.open(src).size and written.mode == "RGB"
            pair = Image.open(out / direction / "side_by_side" / src.name)
            assert pair.size == (2 * written.size[0], written.size[1])
    sheet = (out / "index.html").read_text()
    for src in good:
        assert f'href="AtoB/{src.name}"' in sheet and f'href="BtoA/{src.name}"' in sheet
        assert (out / "thumbs" / "BtoA" / f"{src.name}.jpg").is_file()
    assert "broken.jpg</th><td colspan" in sheet and html.escape("not an image") in sheet


def test_output_is_the_generators_translation(trained: Path, synth_root: Path,
                                              tmp_path: Path) -> None:
    """A 48 px test image (a multiple of the stride) written as PNG equals G_A(x) exactly,
    and BtoA uses G_B: the right generator, loaded right, nothing lost on the way."""
    image = synth_root / "testA" / "00000.jpg"
    code = main(["translate", "--checkpoint", str(trained / "generators.pt"), "--input",
                 str(image), "--output", str(tmp_path), "--png", "--direction", "both"])
    assert code == 0
    x = load_input(image, None)[None]
    for direction, domain in (("AtoB", "A"), ("BtoA", "B")):
        with torch.no_grad():
            expected = to_uint8(generator(trained, domain)(x)[0])
        assert np.array_equal(np.asarray(Image.open(tmp_path / direction / "00000.png")),
                              expected)


def test_full_checkpoint_and_generators_file_agree(trained: Path, synth_root: Path) -> None:
    x = load_input(synth_root / "testB" / "00001.jpg", None)[None]
    a = load_translator(trained / "checkpoints" / "latest.pt", ["BtoA"], CPU)
    b = load_translator(trained / "generators.pt", ["BtoA"], CPU)
    assert a.step == b.step == 2 and a.kind == "checkpoint" and b.kind == "generators"
    assert torch.equal(tiling.run(a.nets["BtoA"], x), tiling.run(b.nets["BtoA"], x))


def test_padding_to_the_stride_is_cropped_back(trained: Path) -> None:
    net = load_translator(trained / "generators.pt", ["AtoB"], CPU).nets["AtoB"]
    x = torch.rand(2, 3, 37, 22) * 2 - 1
    padded, (left, right, top, bottom) = tiling.pad_to_stride(x)
    assert padded.shape[-2:] == (40, 24) and (top, bottom, left, right) == (1, 2, 1, 1)
    y = tiling.forward_padded(net, x)
    assert y.shape == (2, 3, 37, 22)
    with torch.no_grad():
        assert torch.equal(y, net(padded)[..., 1:38, 1:23])
    tiny = torch.rand(1, 3, 1, 3) * 2 - 1  # too small to reflect: replicated instead
    assert tiling.pad_to_stride(tiny)[0].shape[-2:] == (8, 8)
    assert tiling.forward_padded(net, tiny).shape == (1, 3, 1, 3)


def test_shared_norm_statistics_replay_and_restore(trained: Path) -> None:
    net = load_translator(trained / "generators.pt", ["AtoB"], CPU).nets["AtoB"]
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        reference, crop = net(x), net(x[..., :16, :16])
        with tiling.SharedNormStats(net) as norms:
            assert norms.active and len(norms.norms) > 10
            close = {"atol": 1e-5, "rtol": 0}  # the same normalisation, another kernel
            torch.testing.assert_close(net(x), reference, **close)  # recording changes nothing
            norms.recording = False
            torch.testing.assert_close(net(x), reference, **close)  # replayed on the same image
            assert not torch.allclose(net(x[..., :16, :16]), crop)  # a crop: global stats
        assert torch.equal(net(x[..., :16, :16]), crop)  # restored afterwards


def test_tiled_generator_stays_close_to_untiled(trained: Path, synth_root: Path) -> None:
    """Tiling a real generator is not exact; bounded here on a 96x128 image cut into 64 px
    tiles, and closer than with each tile's own instance-norm statistics. An image that fits
    the memory of a batch of tiles runs whole."""
    net = load_translator(trained / "generators.pt", ["AtoB"], CPU).nets["AtoB"]
    image = torch.nn.functional.interpolate(
        load_input(synth_root / "testA" / "00001.jpg", None)[None], size=(96, 128),
        mode="bilinear")
    full = tiling.run(net, image)
    assert torch.equal(tiling.run(net, image, tile=64, overlap=16, batch_size=3), full)
    tiled = tiling.run(net, image, tile=64, overlap=32, batch_size=1)
    own_stats = tiling.run(lambda t: net(t), image, tile=64, overlap=32, batch_size=1)
    diff = (tiled - full).abs()
    assert tiled.shape == full.shape
    assert diff.mean() < 0.1 and diff.max() < 1.0, (diff.mean(), diff.max())
    assert diff.mean() < 0.8 * (own_stats - full).abs().mean()


def test_large_image_runs_within_a_tile_batch(trained: Path) -> None:
    """A 384x640 image with 96 px tiles, 2 per batch: no forward pass of the network sees
    more pixels than two tiles, the statistics pass included."""
    net = load_translator(trained / "generators.pt", ["AtoB"], CPU).nets["AtoB"]
    seen: list[tuple[int, ...]] = []
    net.register_forward_pre_hook(lambda _, inputs: seen.append(tuple(inputs[0].shape)))
    x = torch.rand(1, 3, 384, 640) * 2 - 1
    y = tiling.run(net, x, tile=96, overlap=16, batch_size=2)
    assert y.shape == (1, 3, 384, 640) and torch.isfinite(y).all()
    assert max(n * h * w for n, _, h, w in seen) <= 2 * 96 * 96
    n_tiles = len(tiling.tile_starts(384, 96, 16)) * len(tiling.tile_starts(640, 96, 16))
    assert seen[0][0] == 1 and sum(s[0] for s in seen[1:]) == n_tiles  # stats pass, tiles


def test_size_resizes_the_shorter_side(trained: Path, odd_inputs: Path, tmp_path: Path) -> None:
    code = main(["translate", "--checkpoint", str(trained / "generators.pt"), "--input",
                 str(odd_inputs / "wide.jpg"), str(odd_inputs / "gray.png"), "--output",
                 str(tmp_path), "--size", "24"])
    assert code == 0
    assert Image.open(tmp_path / "wide.jpg").size == (37, 24)  # 70x45 -> shorter side 24
    assert Image.open(tmp_path / "gray.png").size == (34, 24)  # 53x37


@pytest.mark.parametrize("case", ["missing", "foreign", "clash", "no-input", "overwrite"])
def test_errors_are_one_line_and_exit_2(case: str, trained: Path, odd_inputs: Path,
                                        tmp_path: Path, capsys) -> None:
    ckpt = str(trained / "generators.pt")
    inputs = [str(odd_inputs / "wide.jpg")]
    out = str(tmp_path / "out")
    if case == "missing":
        ckpt = str(tmp_path / "nope.pt")
    elif case == "foreign":
        torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
        ckpt = str(tmp_path / "foreign.pt")
    elif case == "clash":
        other = tmp_path / "other"
        other.mkdir()
        (other / "wide.jpg").write_bytes((odd_inputs / "wide.jpg").read_bytes())
        inputs.append(str(other / "wide.jpg"))
    elif case == "no-input":
        inputs = [str(tmp_path / "nothing-here")]
    else:
        out = str(odd_inputs)
    code = main(["translate", "--checkpoint", ckpt, "--input", *inputs, "--output", out])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("liss: "), err
    expected = {"missing": "no such checkpoint", "foreign": "not a liss checkpoint",
                "clash": "would both be written as wide.jpg", "no-input": "no such file",
                "overwrite": "would overwrite this input"}[case]
    assert expected in err


def test_translate_in_a_subprocess(trained: Path, synth_root: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "liss", "translate", "--checkpoint",
         str(trained / "checkpoints" / "latest.pt"), "--input", str(synth_root / "testB"),
         "--output", str(tmp_path), "--direction", "BtoA", "--png", "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "translated 4 of 4 images (BtoA, checkpoint of step 2)" in proc.stdout
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        f"{i:05d}.png" for i in range(4)]
