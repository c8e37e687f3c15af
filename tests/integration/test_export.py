"""`liss export`: every format loads back and translates exactly as the checkpoint does
(ONNX through onnxruntime, within float tolerance); one-direction exports refuse the other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from liss import checkpoint
from liss.cli import main
from liss.eval import tiling
from liss.eval.generators import load_translator, read_state

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


@pytest.fixture
def trained(tiny_run: Path) -> Path:
    return tiny_run / "checkpoints" / "latest.pt"


def inputs() -> torch.Tensor:
    return torch.rand(2, 3, 36, 52, generator=torch.Generator().manual_seed(1)) * 2 - 1


def reference(ckpt: Path, direction: str) -> torch.Tensor:
    return tiling.run(load_translator(ckpt, [direction], CPU).nets[direction], inputs())


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors"])
def test_weight_exports_translate_identically(fmt: str, trained: Path, tmp_path: Path,
                                              synth_root: Path) -> None:
    out = tmp_path / f"gen.{'pt' if fmt == 'state_dict' else 'safetensors'}"
    assert main(["export", "--checkpoint", str(trained), "--output", str(out),
                 "--format", fmt]) == 0
    state = read_state(out)
    assert state["step"] == 2 and state["config"] == checkpoint.load(trained)["config"]
    assert set(state["models"]) == {"G_A", "G_B"}
    assert all(k.startswith(("encoder.", "heads.decoder.")) for k in state["models"]["G_A"])
    for direction in ("AtoB", "BtoA"):
        exported = load_translator(out, [direction], CPU)
        assert torch.equal(tiling.run(exported.nets[direction], inputs()),
                           reference(trained, direction))
    # and through the CLI: the same bytes as from the checkpoint
    for source, folder in ((trained, "ref"), (out, "exp")):
        assert main(["translate", "--checkpoint", str(source), "--input",
                     str(synth_root / "testA"), "--output", str(tmp_path / folder),
                     "--png"]) == 0
    for ref in (tmp_path / "ref").glob("*.png"):
        assert ref.read_bytes() == (tmp_path / "exp" / ref.name).read_bytes()


def test_torchscript_export_translates_identically(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen.pt"
    assert main(["export", "--checkpoint", str(trained), "--output", str(out),
                 "--format", "torchscript"]) == 0
    for direction in ("AtoB", "BtoA"):
        path = tmp_path / f"gen.{direction}.pt"
        loaded = load_translator(path, [direction], CPU)
        assert loaded.kind == "torchscript" and loaded.step == 2
        torch.testing.assert_close(tiling.run(loaded.nets[direction], inputs()),
                                   reference(trained, direction), atol=1e-6, rtol=0)
    plain = torch.jit.load(str(tmp_path / "gen.AtoB.pt"))  # what a server loads
    assert plain(torch.zeros(1, 3, 16, 24)).shape == (1, 3, 16, 24)


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime(trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "gen.onnx"
    assert main(["export", "--checkpoint", str(trained), "--output", str(out),
                 "--format", "onnx", "--direction", "BtoA"]) == 0
    session = ort.InferenceSession(str(out))
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["liss.direction"] == "BtoA" and meta["liss.step"] == "2"
    assert json.loads(meta["liss.config"]) == checkpoint.load(trained)["config"]
    net = load_translator(trained, ["BtoA"], CPU).nets["BtoA"]
    for shape in ((2, 3, 36, 52), (1, 3, 64, 16)):  # batch and sides are dynamic
        x = torch.rand(*shape) * 2 - 1
        (y,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(y), net(x), atol=1e-4, rtol=1e-4)


def test_one_direction_export_refuses_the_other(trained: Path, tmp_path: Path,
                                                synth_root: Path, capsys) -> None:
    out = tmp_path / "a2b.pt"
    assert main(["export", "--checkpoint", str(trained), "--output", str(out),
                 "--direction", "AtoB"]) == 0
    assert set(read_state(out)["models"]) == {"G_A"}
    code = main(["translate", "--checkpoint", str(out), "--input", str(synth_root / "testB"),
                 "--output", str(tmp_path / "o"), "--direction", "BtoA"])
    err = capsys.readouterr().err
    assert code == 2 and "has no generator for BtoA (it has AtoB)" in err


def test_export_in_a_subprocess(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.safetensors"
    proc = subprocess.run([sys.executable, "-m", "liss", "export", "--checkpoint", str(trained),
                           "--output", str(out), "--format", "safetensors"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"wrote {out}"
    assert read_state(out)["kind"] == "safetensors"
