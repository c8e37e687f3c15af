"""The best-checkpoint helper the trainer calls: which direction is better, what is kept, and
its record read back after a restart."""

from __future__ import annotations

from pathlib import Path

from liss import checkpoint
from liss.eval.intraining import BestCheckpoint, higher_is_better


def test_best_checkpoint_keeps_the_best_value(tmp_path: Path) -> None:
    assert higher_is_better("val/A/rotation_acc") and higher_is_better("val/A2B_ssim")
    assert not higher_is_better("val/A2B_changed_l1") and not higher_is_better("val/A2B_fid")
    assert higher_is_better("val/A2B_fid", "max")
    best = BestCheckpoint.for_run(tmp_path, "val/A2B_l1")
    assert best.update({"val/A2B_l1": 0.5}, 10)
    assert not best.update({"val/A2B_l1": 0.6}, 20) and not best.update({"other": 0.1}, 25)
    assert not best.update({"val/A2B_l1": float("nan")}, 27)
    assert best.update({"val/A2B_l1": 0.4}, 30) and (best.value, best.step) == (0.4, 30)
    path = best.save({"format": checkpoint.FORMAT, "step": 30, "models": {}}, tmp_path)
    assert path == tmp_path / "checkpoints" / "best.pt"
    assert checkpoint.load(path)["step"] == 30
    assert checkpoint.step_checkpoints(tmp_path) == []  # not one of the pruned step files
    assert best.metrics() == {"best/val/A2B_l1": 0.4, "best/step": 30.0}
    again = BestCheckpoint.for_run(tmp_path, "val/A2B_l1")  # after a restart
    assert (again.value, again.step) == (0.4, 30) and not again.update({"val/A2B_l1": 0.45}, 40)
    assert BestCheckpoint.for_run(tmp_path, "val/A/rotation_acc").value is None
