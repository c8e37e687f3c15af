"""The optimisers and the learning-rate rule, without a trainer: the epoch-based linear decay,
`legacy_radam`'s documented quirk, and optimisers that cannot train refused as config errors
before anything is built."""

from __future__ import annotations

import pytest
import torch

from liss import config
from liss.train.optim import LinearDecay, build_optimizer


def test_linear_decay_rule() -> None:
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": 1.0,
                            "initial_lr": 1.0}])
    decay = LinearDecay(n_epochs=2, n_epochs_decay=3)
    lrs = []
    for epoch, translation in [(1, True), (2, True), (3, False), (4, True), (5, True),
                               (6, True), (7, True)]:
        decay.end_of_epoch(epoch, translation, [opt])
        lrs.append(opt.param_groups[0]["lr"])
        assert decay.finished == (epoch == 7)
    # epoch 3 ends without translation: not a decay epoch (spec §5.2)
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize(("name", "ratio"), [("radam", 4.0), ("legacy_radam", 1.0)])
def test_legacy_radam_keeps_the_originals_quirk(name: str, ratio: float) -> None:
    """`legacy_radam` (torch_optimizer's, the original's) moves a group with 4x the lr as
    far as the others — the documented quirk; `radam` (torch.optim) moves it 4x as far."""
    shared, depth = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    cfg = config.load(None, [f"optim.name={name}", "optim.lr=1e-3", "optim.lr_depth=4e-3"])
    opt = build_optimizer([{"params": [shared]}, {"params": [depth], "task": "depth"}],
                          cfg.optim)
    for _ in range(8):
        opt.zero_grad()
        (shared.sum() + depth.sum()).backward()
        opt.step()
    assert (depth.abs().sum() / shared.abs().sum()).item() == pytest.approx(ratio, rel=1e-5)


@pytest.mark.parametrize("name", ["optimizer", "lbfgs", "sparseadam", "nosuch"])
def test_optimizers_that_cannot_train_are_config_errors(name: str, tiny_overrides, capsys,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """One line, exit 2, and nothing built: the data pipeline is never reached."""
    from liss.cli import main
    from liss.train import trainer

    monkeypatch.setattr(trainer, "build_pipeline", lambda *a, **k: pytest.fail("built"))
    assert main(["train", *tiny_overrides, f"optim.name={name}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"liss: config error: optim.name='{name}': unknown optimizer; known:")
    assert err.count("\n") == 1
