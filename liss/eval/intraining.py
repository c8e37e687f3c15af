"""Evaluation during training and the best checkpoint: what the trainer calls.

* `InTrainingEval(cfg, data, device)(model)` — paired-truth metrics on the validation split
  (`val/{A2B,B2A}_{metric}` for each of `liss.paired_names.METRICS` the truth allows, and their
  identity baselines), and with `train.eval_fid` FID/KID (`val/{A2B,B2A}_{fid,kid,kid_std}`).
  Validation images carved from train find their truth in `gt/train{A2B,B2A}`; without any
  truth only FID/KID remain.
  FID/KID here take a cheaper path than `liss eval --fid`'s protocol: centre crops at the
  trained size, quantised to uint8 in memory rather than full images written as PNGs, so
  they track progress but are not comparable with published numbers; the features and the
  metrics are the same torch-fidelity code (`fid.py`), and the real crops' features are
  computed once and reused.
* `BestCheckpoint` — keeps `checkpoints/best.pt` (the full state, atomically written) and
  `best.json` for the best value of `train.best_metric` seen so far; `best.json` carries the
  record across restarts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from liss import checkpoint
from liss.config import Config, ConfigError
from liss.data.augment import center_params
from liss.data.batch import by_shape
from liss.data.layout import DOMAINS
from liss.data.pipeline import InputPipeline
from liss.data.torch_backend import load_sample
from liss.eval import fid as fid_lib
from liss.eval.paired import paired_metrics
from liss.eval.translate import quantize
from liss.model import LissModel, other

log = logging.getLogger(__name__)
HIGHER_IS_BETTER = ("acc", "psnr", "ssim")  # metric name endings; everything else: lower


class InTrainingEval:
    """Paired-truth (and FID/KID) metrics of the validation split, for `train.eval_every`."""

    def __init__(self, cfg: Config, data: InputPipeline, device: torch.device, *,
                 fid: bool = False, inception_weights: str = "",
                 extractor: fid_lib.Extractor | None = None):
        """`fid`: also FID/KID, with `inception_weights` (empty: $LISS_INCEPTION_WEIGHTS) or
        `extractor`. Missing or wrong weights are a ConfigError, before training starts."""
        self.cfg, self.device = cfg, device
        self.root = Path(cfg.data.root)
        self.files = {d: data.splits["val"][d] for d in DOMAINS}
        self.prep = data.prep
        self.truth_split = None if (self.root / "valA").is_dir() else "train"
        self.extractor = extractor
        if fid and extractor is None:
            try:
                weights = fid_lib.resolve_weights(inception_weights or None)
                self.extractor = fid_lib.load_inception(weights, device)
            except fid_lib.InceptionWeightsError as e:
                raise ConfigError("train.eval_fid", True, str(e)) from None
        self.reference: dict[str, torch.Tensor] = {}
        self.warned = False

    def __call__(self, model: LissModel) -> dict[str, float]:
        d = self.cfg.data
        batch = max(1, d.batch_size)
        metrics = paired_metrics(model, self.root, self.files, prep=self.prep,
                                 split="val", direction=d.direction,
                                 batch_size=batch, device=self.device,
                                 truth_split=self.truth_split)
        if not metrics and not self.warned:
            log.warning("train.eval_every: no paired truth for the validation images under "
                        "%s; only FID/KID (train.eval_fid) can be computed", self.root / "gt")
            self.warned = True
        if self.extractor is not None:
            metrics |= self.fid_metrics(model, batch)
        return metrics

    def crops(self, d: str, batch_size: int) -> Iterator[Tensor]:
        """Domain d's validation images as validation sees them (data.preprocess, centre
        crops), in [-1, 1], in torch-fidelity's reading order; each batch of one size."""
        files = fid_lib.protocol_order(self.files[d])
        for i in range(0, len(files), batch_size):
            images = [load_sample(f, False, self.prep, center_params)[0]
                      for f in files[i:i + batch_size]]
            yield from map(torch.stack, by_shape(images, [x.shape for x in images]))

    @torch.no_grad()
    def fid_metrics(self, model: LissModel, batch_size: int) -> dict[str, float]:
        """`val/{A2B,B2A}_{fid,kid,kid_std}` of G_d(crops of d) against the real crops of
        the other domain, both quantised to uint8."""
        was_training = model.training
        model.eval()
        out: dict[str, float] = {}
        for d in DOMAINS:
            o = other(d)
            if len(self.files[d]) < 2 or len(self.files[o]) < 2:
                continue
            if o not in self.reference:
                self.reference[o] = fid_lib.features(
                    self.extractor, (quantize(x) for x in self.crops(o, batch_size)),
                    self.device)
            fakes = (quantize(model.translate(d, x.to(self.device)))
                     for x in self.crops(d, batch_size))
            scores = fid_lib.scores(fid_lib.features(self.extractor, fakes, self.device),
                                    self.reference[o])
            out.update({f"val/{d}2{o}_{k}": v for k, v in scores.items()})
        model.train(was_training)
        return out


def higher_is_better(metric: str, mode: str = "auto") -> bool:
    """`max` / `min`, or from the name: accuracies, PSNR and SSIM up, losses and L1/FID down."""
    if mode != "auto":
        return mode == "max"
    return metric.rsplit("/", 1)[-1].endswith(HIGHER_IS_BETTER)


@dataclass
class BestCheckpoint:
    """The best value of one metric so far, and the checkpoint that scored it."""

    metric: str
    mode: str = "auto"
    value: float | None = None
    step: int | None = None

    @classmethod
    def for_run(cls, run_dir: Path, metric: str, mode: str = "auto") -> BestCheckpoint:
        """Resume the record of `best.json` when it is about the same metric."""
        best = cls(metric, mode)
        record = run_dir / "checkpoints" / "best.json"
        if record.is_file():
            saved = json.loads(record.read_text())
            if saved.get("metric") == metric:
                best.value, best.step = saved["value"], saved["step"]
        return best

    def improves(self, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.metric)
        if value is None or value != value:  # not computed this time, or NaN
            return False
        if self.value is None:
            return True
        up = higher_is_better(self.metric, self.mode)
        return value > self.value if up else value < self.value

    def update(self, metrics: dict[str, float], step: int) -> bool:
        """Record `metrics[metric]` at `step` if it is the best so far; True when it is."""
        if not self.improves(metrics):
            return False
        self.value, self.step = float(metrics[self.metric]), step
        return True

    def save(self, state: dict[str, Any], run_dir: Path) -> Path:
        """Write `checkpoints/best.pt` (atomically) and `best.json`."""
        folder = run_dir / "checkpoints"
        path = checkpoint.write_atomic(state, folder / "best.pt")
        record = {"metric": self.metric, "value": self.value, "step": self.step,
                  "higher_is_better": higher_is_better(self.metric, self.mode)}
        (folder / "best.json").write_text(json.dumps(record, indent=1))
        return path

    def metrics(self) -> dict[str, float]:
        """What to log: `best/<metric>` and `best/step`."""
        return {f"best/{self.metric}": float(self.value), "best/step": float(self.step)}
