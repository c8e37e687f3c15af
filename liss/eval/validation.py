"""Deterministic validation (centre crops, fixed puzzles), pooled exactly across ranks."""

from __future__ import annotations

import torch

from liss.data.layout import DOMAINS
from liss.data.pipeline import InputPipeline
from liss.distributed import DistEnv
from liss.model import LissModel
from liss.precision import Precision


@torch.no_grad()
def run_validation(model: LissModel, data: InputPipeline, env: DistEnv, precision: Precision,
                   channels_last: bool, split: str = "val") -> dict[str, float]:
    """Every task's loss (and accuracy) plus cycle/identity L1, per domain, on `split`."""
    was_training = model.training
    model.eval()
    sums: dict[str, list] = {}
    for d in DOMAINS:
        for x in data.eval_batches(split, d):
            x = x.to(env.device, channels_last)
            with precision.autocast():
                batch_sums = model.validation_sums(d, x)
            for key, (total, count) in batch_sums.items():
                acc = sums.setdefault(key, [torch.zeros((), dtype=torch.float64,
                                                        device=env.device), 0])
                acc[0] += total.double()
                acc[1] += count
    model.train(was_training)
    return env.reduce_means({k: (v[0], v[1]) for k, v in sums.items()})
