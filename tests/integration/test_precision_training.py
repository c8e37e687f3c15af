"""Precision and memory format in a real Trainer: fp16 overflow skips the step and is counted,
channels_last batches train, and torch.compile'd steps train and checkpoint like eager
ones. (One step's gradients per precision, without a trainer: unit/test_precision.py.)"""

from __future__ import annotations

import pytest
import torch

from liss.distributed import init_distributed
from liss.train.trainer import Trainer


def test_fp16_overflow_skips_the_step_and_counts_it(tiny_config) -> None:
    t = Trainer(tiny_config("tracking.uri=none", "train.precision=fp16"), init_distributed("cpu"))
    G = t.sides["G"]
    G.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # guaranteed overflow
    before = {k: v.clone() for k, v in t.model.G["A"].state_dict().items()}
    t.train_step(next(t._batches()))
    assert G.skipped.item() == 1
    assert all(torch.equal(before[k], v) for k, v in t.model.G["A"].state_dict().items())
    assert G.scaler.get_scale() < 2.0**100  # backed off
    t.train_step(next(t._batches()))
    assert G.skipped.item() >= 1
    D = t.sides["D"]  # every skip the count records is one back-off of D's scaler
    assert D.scaler.get_scale() == 2.0**16 / 2 ** D.skipped.item()


def test_channels_last_training_runs(tiny_config) -> None:
    t = Trainer(tiny_config("tracking.uri=none", "train.channels_last=true"),
                init_distributed("cpu"))
    assert t.channels_last
    x = next(t._batches())
    assert x.A.image.is_contiguous(memory_format=torch.channels_last)
    losses = t.train_step(x)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.slow
def test_compiled_steps_train_and_checkpoint_like_eager(tiny_config) -> None:
    """train.compile: the whole G step and the whole D step, compiled (translation and the
    gray task, whose discriminator is called frozen in the G step; about 2 min to compile
    here, all four tasks take several). Two steps: the second reuses the graphs."""
    overrides = ("tracking.uri=none", "tasks.auxiliary_tasks=[gray]")
    eager = Trainer(tiny_config(*overrides), init_distributed("cpu"))
    compiled = Trainer(tiny_config(*overrides, "train.compile=true"), init_distributed("cpu"))
    batches = eager._batches()
    for _ in range(2):
        batch = next(batches)
        a, b = eager.train_step(batch), compiled.train_step(batch)
        assert a.keys() == b.keys()
        for k in a:
            assert b[k].item() == pytest.approx(a[k].item(), rel=1e-3, abs=1e-5), k
    assert eager.state_dict()["models"].keys() == compiled.state_dict()["models"].keys()
    for name, sd in compiled.state_dict()["models"].items():
        assert sd.keys() == eager.state_dict()["models"][name].keys()
        for key, value in sd.items():  # the same update, not only the same losses
            assert torch.allclose(value, eager.state_dict()["models"][name][key], atol=1e-5)
