"""Config errors through a real `python -m liss` process: one line on stderr, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_subprocess_error_has_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "liss", "train", "configs/quickstart.yaml",
                           "train.precision=fp8"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "liss: config error: train.precision='fp8': must be one of fp32, bf16, fp16, auto"]
