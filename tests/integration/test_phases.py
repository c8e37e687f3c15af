"""Phase changes do what they claim on real weights: freezing freezes (momentum included),
flow flows, distillation pulls only the current encoder, references merge, per-task learning
rates and the epoch-based decay rule are honoured, by a real Trainer. (The decay rule and the
optimisers alone: unit/test_optim.py.)"""

from __future__ import annotations

import math

import pytest
import torch

from liss.distributed import init_distributed
from liss.schedule import Phase
from liss.train.trainer import Trainer

TASKS = ("rotation", "jigsaw", "depth", "gray")
ALL_PASS = {f"val/{d}/{k}": v for d in "AB" for k, v in (
    ("rotation_acc", 1.0), ("jigsaw_acc", 1.0), ("depth_loss", 0.0), ("gray_loss", 0.0))}


def make_trainer(tiny_config, *overrides: str) -> Trainer:
    return Trainer(tiny_config("tracking.uri=none", "loss.pool_size=0", *overrides),
                   init_distributed("cpu"))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def train(trainer: Trainer, steps: int) -> None:
    batches = trainer._batches()
    for _ in range(steps):
        trainer.train_step(next(batches))
        trainer.step += 1


def test_freeze_keeps_encoders_and_heads_bit_identical(tiny_config) -> None:
    t = make_trainer(tiny_config, "schedule.task_schedule=representational")
    train(t, 2)  # the optimiser now holds momentum for encoders and heads
    assert t.advance_schedule(ALL_PASS) is not None
    assert t.phase.frozen == ("task_heads", "encoders")
    frozen = {f"{d}.{part}": snapshot(m) for d in "AB" for part, m in
              [("encoder", t.model.G[d].encoder)] + [(n, t.model.G[d].heads[n]) for n in TASKS]}
    decoders = {d: snapshot(t.model.G[d].decoder) for d in "AB"}
    train(t, 3)
    for name, before in frozen.items():
        d, part = name.split(".")
        module = t.model.G[d].encoder if part == "encoder" else t.model.G[d].heads[part]
        assert same(before, module.state_dict()), f"{name} moved while frozen"
    assert all(not same(decoders[d], t.model.G[d].decoder.state_dict()) for d in "AB")


def test_flow_keeps_training_the_encoders(tiny_config) -> None:
    t = make_trainer(tiny_config, "schedule.task_schedule=representational",
                     "schedule.repr_mode=flow")
    train(t, 1)
    t.advance_schedule(ALL_PASS)
    encoders = {d: snapshot(t.model.G[d].encoder) for d in "AB"}
    heads = snapshot(t.model.G["A"].heads["depth"])
    train(t, 2)
    assert all(not same(encoders[d], t.model.G[d].encoder.state_dict()) for d in "AB")
    assert same(heads, t.model.G["A"].heads["depth"].state_dict())


def test_traduction_trains_encoders_through_frozen_decoders(tiny_config) -> None:
    t = make_trainer(tiny_config, "schedule.task_schedule=representational-traduction",
                     "schedule.repr_mode=flow")
    decoder, d_a = snapshot(t.model.G["A"].decoder), snapshot(t.model.D["A"])
    encoder = snapshot(t.model.G["A"].encoder)
    train(t, 2)
    assert same(decoder, t.model.G["A"].decoder.state_dict())
    assert same(d_a, t.model.D["A"].state_dict())  # D_A/D_B are not stepped in phase 0
    assert not same(encoder, t.model.G["A"].encoder.state_dict())
    t.advance_schedule(ALL_PASS)
    train(t, 1)
    assert not same(decoder, t.model.G["A"].decoder.state_dict())
    assert not same(d_a, t.model.D["A"].state_dict())


def test_traduction_phase_0_leaves_the_translation_pools_empty(tiny_config) -> None:
    """Phase 0 of representational-traduction trains the gray discriminators but not D_A/D_B:
    the pools of translation fakes (from frozen decoders) stay empty until D_A/D_B train."""
    t = Trainer(tiny_config("tracking.uri=none", "loss.pool_size=4",
                            "schedule.task_schedule=representational-traduction"),
                init_distributed("cpu"))
    train(t, 2)
    assert t.sides["D"].active  # the gray discriminators did train
    assert all(not pool.images for pool in t.pools.values())
    t.advance_schedule(ALL_PASS)
    train(t, 1)
    assert all(len(pool.images) == 2 for pool in t.pools.values())  # one batch of 2


def test_distillation_is_zero_after_a_snapshot_and_grows_with_drift(tiny_config) -> None:
    t = make_trainer(tiny_config, "schedule.task_schedule=liss",
                     "schedule.rotation_acc_threshold=0.0")
    batch = next(t._batches())
    assert not t.model.E_ref
    event = t.advance_schedule(ALL_PASS)
    assert event.update_reference and t.phase.distillation
    ref = snapshot(t.model.E_ref["A"])
    assert t.model.generator_losses(batch, t.phase).terms["distill_A"].item() == 0.0
    train(t, 3)
    drifted = t.model.generator_losses(batch, t.phase).terms["distill_A"]
    assert drifted.item() > 0
    assert same(ref, t.model.E_ref["A"].state_dict())  # the reference never trains

    t.model.zero_grad(set_to_none=True)
    drifted.backward()
    assert all(p.grad is None for p in t.model.E_ref["A"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in t.model.G["A"].encoder.parameters())


def test_reference_merge_averages_snapshots(tiny_config) -> None:
    t = make_trainer(tiny_config, "schedule.task_schedule=liss",
                     "schedule.encoder_merge_ratio=0.5")
    model = t.model
    model.update_reference(0.5)  # first call: a snapshot, whatever alpha
    first = snapshot(model.G["A"].encoder)
    assert same(first, model.E_ref["A"].state_dict())
    with torch.no_grad():
        for p in model.G["A"].encoder.parameters():
            p.add_(torch.randn_like(p))
    second = snapshot(model.G["A"].encoder)
    model.update_reference(0.5)
    merged = model.E_ref["A"].state_dict()
    for k in first:
        assert torch.allclose(merged[k], 0.5 * first[k] + 0.5 * second[k])


@pytest.mark.parametrize("optimizer", ["radam", "adam", "sgd"])
def test_per_task_learning_rates_scale_head_updates(tiny_config, optimizer: str) -> None:
    """Every optimizer liss builds honours the per-task rates (spec §5.3)."""
    lrs = {"rotation": 2, "jigsaw": 3, "depth": 4, "gray": 5}  # multiples of optim.lr
    base = make_trainer(tiny_config, "optim.lr=1e-4", f"optim.name={optimizer}")
    scaled = make_trainer(tiny_config, "optim.lr=1e-4", f"optim.name={optimizer}",
                          *(f"optim.lr_{k}={v}e-4" for k, v in lrs.items()))
    batch = next(base._batches())
    deltas = {}
    for name, t in (("base", base), ("scaled", scaled)):
        before = {k: snapshot(t.model.G["A"].heads[k]) for k in TASKS}
        enc = snapshot(t.model.G["A"].encoder)
        t.train_step(batch)
        deltas[name] = {k: _delta(before[k], t.model.G["A"].heads[k]) for k in TASKS}
        deltas[name]["encoder"] = _delta(enc, t.model.G["A"].encoder)
    for task, mult in lrs.items():
        assert deltas["scaled"][task] / deltas["base"][task] == pytest.approx(mult, rel=1e-4)
    assert deltas["scaled"]["encoder"] == pytest.approx(deltas["base"]["encoder"], rel=1e-6)


def _delta(before: dict, module: torch.nn.Module) -> float:
    return sum((module.state_dict()[k] - v).abs().sum().item() for k, v in before.items())


@pytest.mark.slow
def test_epoch_rule_ends_training(tiny_config) -> None:
    t = make_trainer(tiny_config, "optim.n_epochs=1", "optim.n_epochs_decay=1",
                     "train.max_steps=0", "train.val_every=1000")
    assert t.fit() == 0
    per_epoch = t.data.epoch_length / t.cfg.data.batch_size
    assert t.step == math.ceil(3 * per_epoch)  # 1 constant + 1 full-lr + 1 decayed epoch
    assert t.decay.decay_epochs == 2 and t.counters.epochs_done == 3


def test_decay_waits_for_translation_and_max_steps_caps(tiny_config) -> None:
    t = make_trainer(tiny_config, "schedule.task_schedule=sequential",
                     "schedule.rotation_acc_threshold=1.0", "optim.n_epochs=0",
                     "optim.n_epochs_decay=1", "train.max_steps=12", "train.val_every=4")
    assert t.fit() == 0
    assert t.step == 12 and t.counters.epochs_done >= 2
    assert t.decay.decay_epochs == 0 and t.phase == Phase(0, ("rotation",))
    assert t.sides["G"].optimizer.param_groups[0]["lr"] == t.cfg.optim.lr
