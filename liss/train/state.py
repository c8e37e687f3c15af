"""Pieces of trainer state that are not a module or an optimizer, each with its own
`state_dict`: counters, the schedule position, a rank's randomness. The trainer assembles a
checkpoint from these and the components' own state dicts; `liss.checkpoint` only writes it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from liss.config import Config
from liss.pool import ImagePool
from liss.schedule import Event, Phase

log = logging.getLogger(__name__)


@dataclass
class Counters:
    """Steps and epochs done: with the global batch, all the sample stream resumes from."""

    step: int = 0
    epochs_done: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.epochs_done = int(state["step"]), int(state["epochs_done"])


@dataclass
class SchedulePosition:
    """The current phase and every event so far (the start included)."""

    phase: Phase
    events: list[Event] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase.to_dict(), "events": [e.to_dict() for e in self.events]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase = Phase.from_dict(state["phase"])
        self.events = [Event.from_dict(e) for e in state["events"]]


def process_rng_state() -> dict[str, Any]:
    """This process's global RNG streams (torch, CUDA, NumPy, Python) as tensors and ints."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, _ = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": torch.tensor([version, *internal], dtype=torch.long),
    }


def set_process_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    values = state["python"].tolist()
    random.setstate((values[0], tuple(values[1:]), None))


def restore_rank_state(ranks: list[dict[str, Any]], rank: int, world_size: int,
                       pools: dict[str, ImagePool], device: torch.device) -> None:
    """This rank's pools and RNG. Saved by another world size (or best.pt, which holds
    rank 0's only), rank 0 takes the first entry and the others keep their fresh seeds."""
    if len(ranks) != world_size:
        if rank != 0:
            return
        log.warning("checkpoint holds pools and RNG of %d rank(s), this run has %d: rank 0 "
                    "restores the first, the others start theirs afresh", len(ranks), world_size)
    mine = ranks[rank]
    for d, pool in pools.items():
        pool.load_state_dict(mine["pools"][d], device)
    set_process_rng_state(mine["rng"])


def generators_export(models: dict[str, torch.nn.Module], cfg: Config, step: int,
                      format_version: int) -> dict[str, Any]:
    """Generator-only weights with their config: what translation needs, nothing else."""
    return {"format": format_version, "kind": "generators", "step": step,
            "config": cfg.to_dict(),
            "models": {name: models[name].state_dict() for name in ("G_A", "G_B")}}
