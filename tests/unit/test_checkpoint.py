"""Checkpoints that must not be trusted: a truncated newest one is skipped with a warning, and
one whose pickle would run code is refused (by the loader and by `liss train` resuming it)."""

from __future__ import annotations

import os

import pytest
import torch

from liss import checkpoint


def test_truncated_newest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog) -> None:
    for step in (1, 2):
        checkpoint.save({"format": checkpoint.FORMAT, "step": step, "models": {}}, tmp_path, 3)
    newest = tmp_path / "checkpoints" / "step_2.pt"
    newest.write_bytes(newest.read_bytes()[:50])
    path, state = checkpoint.newest_valid(tmp_path)
    assert path.name == "step_1.pt" and state["step"] == 1
    assert "skipping checkpoint" in caplog.text and "step_2.pt" in caplog.text


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {_Exploit.marker}",))


def test_a_checkpoint_that_runs_code_is_refused(tmp_path, tiny_overrides, capsys) -> None:
    from liss.cli import main

    _Exploit.marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "step": 1, "models": {}, "x": _Exploit()}, bad)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"unsafe checkpoint \(its pickle needs posix\.system"):
        checkpoint.load(bad)
    assert main(["train", *tiny_overrides, "tracking.uri=none", f"train.resume={bad}"]) == 2
    assert "unsafe checkpoint" in capsys.readouterr().err
    assert not _Exploit.marker.exists()
