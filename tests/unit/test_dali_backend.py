"""The DALI backend on the CPU (`device_id=None`), for real: the Batch contract, NHWC handed
over without a layout copy, thread-count independence, backend choice, a clear message
without DALI. (A fresh process without DALI and a training run on it:
integration/test_dali_end_to_end.py.)"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import torch

from liss import config
from liss.config import ConfigError
from liss.data import dali_backend
from liss.data.pipeline import build_pipeline, resolve_backend

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
