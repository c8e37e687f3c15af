"""The torch backend with real DataLoader worker processes: a file that fails in a worker
reaches the pipeline, substituted and counted (`skip`) or raised naming it (`error`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from liss import config
from liss.data.images import BadImageError
from liss.data.pipeline import build_pipeline


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_failures_in_worker_processes_reach_the_pipeline(synth_root: Path, tmp_path: Path,
                                                         policy: str) -> None:
    """A DataLoader worker cannot report a substitution itself: it travels with the batch."""
    root = shutil.copytree(synth_root, tmp_path / "ds")
    cfg = config.load(None, [f"data.root={root}", "data.load_size=40", "data.crop_size=32",
                             "data.batch_size=2", "data.num_workers=1", "data.backend=torch",
                             f"data.on_bad_file={policy}"])
    data = build_pipeline(cfg)
    gone = data.splits["train"].A[0]
    gone.unlink()
    batches = data.train_batches()
    if policy == "error":
        with pytest.raises(BadImageError, match=re.escape(f"{gone}: cannot read")):
            for _ in range(data.epoch_length):
                next(batches)
        return
    for _ in range(data.epoch_length):  # a whole epoch of A: every file is asked for
        assert 0 not in next(batches).A.index.tolist()
    assert data.skipped_files["train"] == [(gone, "cannot read: No such file or directory")]
