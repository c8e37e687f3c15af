"""`liss data check` in a real `python -m liss` process, on a good_dataset dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_good_dataset_through_the_cli(good_dataset: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "liss", "data", "check", str(good_dataset)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trainA 3, trainB 3, testA 2, testB 2" in done.stdout
    assert "; 10 depth maps; 0 warnings" in done.stdout
