"""`liss data check` in a real `python -m liss` process, on a good dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from liss.data import synthetic

SIZE = 32


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("check") / "good"
    synthetic.generate(out, n_train=3, n_test=2, size=SIZE, seed=1)
    return out


def test_good_dataset_through_the_cli(good: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "liss", "data", "check", str(good)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trainA 3, trainB 3, testA 2, testB 2" in done.stdout
    assert "; 10 depth maps; 0 warnings" in done.stdout
