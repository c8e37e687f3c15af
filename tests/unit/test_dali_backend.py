"""The DALI backend on the CPU (`device_id=None`), for real: the Batch contract, NHWC handed
over without a layout copy, thread-count independence, backend choice, a clear message
without DALI, and a short training run end to end."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from liss import config
from liss.cli import main
from liss.config import ConfigError
from liss.data import dali_backend
from liss.data.pipeline import build_pipeline, resolve_backend
from liss.train import checkpoint

REPO = Path(__file__).resolve().parents[2]


def dali_pipeline(root: Path, *extra: str):
    return build_pipeline(config.load(None, [
        f"data.root={root}", "data.backend=dali", "data.load_size=40", "data.crop_size=32",
        "data.batch_size=3", "data.num_workers=1", "train.device=cpu", *extra]))


def test_train_batches_follow_the_contract(synth_root: Path) -> None:
    data = dali_pipeline(synth_root)
    assert data.backend == "dali"
    batch = next(data.train_batches())
    refs = list(itertools.islice(iter(data.sampler()), 3))
    for d in "AB":
        x = batch[d]
        assert x.image.shape == (3, 3, 32, 32) and x.image.dtype == torch.float32
        assert -1 <= x.image.min() < x.image.max() <= 1
        assert x.depth.shape == (3, 1, 32, 32) and 0 <= x.depth.min() < x.depth.max() <= 1
        assert x.key.dtype == x.index.dtype == torch.long
        assert x.key.tolist() == [r.key_A if d == "A" else r.key_B for r in refs]
        assert x.index.tolist() == [r.index_A if d == "A" else r.index_B for r in refs]
        # NHWC from DALI, seen as NCHW: already channels_last, so moving it costs no copy
        assert x.image.is_contiguous(memory_format=torch.channels_last)
        moved = x.to(torch.device("cpu"), channels_last=True)
        assert moved.image.data_ptr() == x.image.data_ptr()


def test_no_depth_when_no_task_needs_it(synth_root: Path) -> None:
    batch = next(dali_pipeline(synth_root, "tasks.auxiliary_tasks=rotation").train_batches())
    assert batch.A.depth is None and batch.B.depth is None


def test_thread_count_does_not_change_the_stream(synth_root: Path) -> None:
    one, two = (list(itertools.islice(dali_pipeline(synth_root, f"data.num_workers={n}")
                                      .train_batches(), 3)) for n in (1, 2))
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a.A.image, b.A.image) and torch.equal(a.B.depth, b.B.depth)


def test_backend_choice() -> None:
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("dali", "cpu") == "dali"
    # auto picks DALI only to train on CUDA; on a CPU torch's resampling is faster
    assert resolve_backend("auto", "cpu") == "torch"


def test_without_dali_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("nvidia.dali")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # import fails
    dali_backend.unavailable_reason.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"data.backend='dali'.*pip install liss\[dali\]"):
            resolve_backend("dali", "cpu")
        assert resolve_backend("auto", "cpu") == "torch"
    finally:
        dali_backend.unavailable_reason.cache_clear()


def test_liss_imports_without_dali() -> None:
    code = ("import sys; sys.modules['nvidia'] = None\n"
            "import liss.cli, liss.data.pipeline, liss.data.dali_backend, liss.train.trainer\n"
            "from liss.data.pipeline import resolve_backend\n"
            "assert resolve_backend('auto', 'cpu') == 'torch'\n"
            "try:\n"
            "    resolve_backend('dali', 'cpu')\n"
            "except Exception as e:\n"
            "    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "pip install liss[dali]" in done.stdout


@pytest.mark.slow
def test_short_training_run_on_the_dali_cpu_pipeline(tiny_overrides: list[str]) -> None:
    # no tracking: MLflow's store set-up would double this test's time (the data-wait
    # metric it logs is read back in bench/data_pipeline.py and test_train.py)
    assert main(["train", *tiny_overrides, "data.backend=dali", "data.num_workers=1",
                 "train.max_steps=4", "train.val_every=4", "train.device=cpu",
                 "tracking.uri=none"]) == 0
    run_dir = config.load(None, tiny_overrides).run_dir
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    assert config.load(run_dir / "config.yaml", []).data.backend == "dali"
    state = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    assert state["step"] == 4 and state["trainer"]["sample_position"] == 4 * 2
    assert (run_dir / "grids" / "step_4.png").is_file()
