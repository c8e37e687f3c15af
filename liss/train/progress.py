"""Training output on rank 0: a redrawn progress line on a terminal (`train.progress`), else
one log line per `train.log_every` steps."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping


class Progress:
    def __init__(self, total: int, enabled: bool = True, is_main: bool = True):
        self.total, self.is_main = total, is_main
        self.tty = sys.stderr.isatty()
        self.enabled = enabled and self.tty and is_main  # the redrawn bar
        self.start = time.monotonic()
        self._last_draw = 0.0
        self.summary = ""

    def update(self, step: int, img_per_s: float, phase: str) -> None:
        """Redraw (TTY only, at most 4 times a second)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.25 and step != self.total:
            return
        self._last_draw = now
        total = f"/{self.total}" if self.total else ""
        line = f"step {step}{total} | {img_per_s:6.1f} img/s | {phase} | {self.summary}"
        sys.stderr.write("\r" + line[:160].ljust(160))
        sys.stderr.flush()

    def set_losses(self, losses: Mapping[str, float], step: int) -> None:
        """Called at log intervals, when losses have become floats anyway."""
        self.summary = " ".join(f"{k.removeprefix('train/')} {v:.3f}"
                                for k, v in losses.items() if k.startswith("train/"))
        if self.is_main and not self.enabled:
            total = f"/{self.total}" if self.total else ""
            print(f"step {step}{total} | {self.summary}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.is_main:
            return
        if self.enabled:
            sys.stderr.write("\r" + " " * 160 + "\r")
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
