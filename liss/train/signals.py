"""Preemption: SIGTERM / SIGUSR1 / SIGUSR2 (what SLURM and Kubernetes send) ask the trainer
to finish its step, checkpoint and exit with EXIT_PREEMPTED, which launchers map to a
requeue. A second signal exits at once; the last checkpoint on disk stays valid because
checkpoints are written atomically.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again later", i.e. requeue and resume
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class PreemptionHandler:
    """Records the first preemption signal; the trainer polls `requested` between steps."""

    def __init__(self, signals: tuple[signal.Signals, ...] = PREEMPTION_SIGNALS):
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            sys.stderr.write(f"liss: second signal {signal.Signals(signum).name}: exiting now; "
                             "the last checkpoint stays valid\n")
            os._exit(EXIT_PREEMPTED)
        self.received = signum
        sys.stderr.write(f"\nliss: {signal.Signals(signum).name} received: finishing the step, "
                         "checkpointing, exiting\n")

    def __enter__(self) -> PreemptionHandler:
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
