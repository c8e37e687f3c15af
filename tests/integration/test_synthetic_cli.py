"""`liss data synth` in a real `python -m liss` process, and `--if-missing` leaving a
complete dataset alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from liss.data import synthetic
from liss.data.layout import list_images


def liss(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "liss", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_cli_synth_and_if_missing(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = liss("data", "synth", str(out), "--n-train", "4", "--n-test", "2", "--size", "32",
                 cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert synthetic.is_complete(out) and len(list_images(out / "trainB")) == 4
    assert "trainA 4" in first.stdout
    stamp = (out / synthetic.MARKER).stat().st_mtime_ns
    second = liss("data", "synth", str(out), "--n-train", "4", "--n-test", "2", "--size", "32",
                  "--if-missing", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already" in second.stdout
    assert (out / synthetic.MARKER).stat().st_mtime_ns == stamp
