"""What the trainer does besides stepping, each a small object with its own period.

After every step the loop asks each job, in order, whether it is due (`every` steps, and at
the last step); a due job runs and may return metrics, which the jobs after it in the same
step see (the best checkpoint reads what validation and evaluation just measured).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from liss.data.batch import DomainBatch
from liss.data.layout import DOMAINS
from liss.data.pipeline import InputPipeline
from liss.train.grid import render_grid, save_png
from liss.train.system import system_metrics

if TYPE_CHECKING:
    from liss.eval.intraining import BestCheckpoint, InTrainingEval
    from liss.train.trainer import Trainer

Metrics = dict[str, float]


@dataclass
class Job:
    every: int  # 0: never periodically (some jobs still run at the last step)

    def due(self, step: int, final: bool) -> bool:
        return final or (self.every > 0 and step % self.every == 0)

    def observe(self, trainer: Trainer, losses: dict[str, Tensor], data_wait: float) -> None:
        """Called after every step, due or not (for jobs that accumulate)."""

    def run(self, trainer: Trainer, metrics: Metrics) -> Metrics:
        raise NotImplementedError


@dataclass
class LogTraining(Job):
    """Mean losses, throughput, data-wait share and learning rates every `every` steps; the
    progress line after every step. Losses stay on the device until they are logged."""

    running: dict[str, Tensor] = field(default_factory=dict)
    steps: int = 0
    data_wait: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def observe(self, trainer: Trainer, losses: dict[str, Tensor], data_wait: float) -> None:
        for k, v in losses.items():
            self.running[k] = self.running.get(k, 0.0) + v
        self.steps += 1
        self.data_wait += data_wait
        if trainer.env.is_main:
            trainer.progress.update(trainer.step, self._images(trainer) / self._elapsed(),
                                    "+".join(trainer.phase.active))

    def run(self, trainer: Trainer, metrics: Metrics) -> Metrics:
        elapsed = self._elapsed()
        out = {f"train/{k}": float(v) / self.steps for k, v in self.running.items()}
        out |= {"perf/img_per_s": self._images(trainer) / elapsed,
                "perf/data_wait_frac": self.data_wait / elapsed,
                "train/epoch": float(trainer.counters.epochs_done),
                "data/skipped_files": float(trainer.data.skipped_count)}  # this rank's
        for side in trainer.sides.values():
            for g in side.optimizer.param_groups:
                out[f"lr/{g['group_name']}"] = g["lr"]
            if trainer.precision.name == "fp16":
                out[f"train/skipped_steps_{side.name}"] = float(side.skipped)
        if trainer.cfg.tracking.log_system_metrics:
            out |= system_metrics(trainer.env.device)
        trainer.tracker.log_metrics(out, trainer.step)
        trainer.progress.set_losses(out, trainer.step)
        self.running, self.steps, self.data_wait = {}, 0, 0.0
        self.since = time.monotonic()
        return {}

    def _images(self, trainer: Trainer) -> int:
        return self.steps * trainer.cfg.data.batch_size

    def _elapsed(self) -> float:
        return max(time.monotonic() - self.since, 1e-9)


@dataclass
class Validate(Job):
    """Validation metrics; on the `every` grid they drive the schedule. The schedule moves
    only there, so a run stopped at max_steps and extended takes the same path as one run."""

    def run(self, trainer: Trainer, metrics: Metrics) -> Metrics:
        return trainer.validate(advance=trainer.step % self.every == 0)


@dataclass
class Evaluate(Job):
    """Paired-truth (and FID/KID) metrics of the validation split (rank 0; the other ranks
    wait at their next collective)."""

    evaluator: InTrainingEval | None = None

    def run(self, trainer: Trainer, metrics: Metrics) -> Metrics:
        if self.evaluator is None:
            return {}
        evaluated = self.evaluator(trainer.model)
        trainer.tracker.log_metrics(evaluated, trainer.step)
        return evaluated


@dataclass
class KeepBest(Job):
    """`checkpoints/best.pt` whenever `train.best_metric` improves (rank 0 only)."""

    best: BestCheckpoint | None = None

    def due(self, step: int, final: bool) -> bool:
        return self.best is not None

    def run(self, trainer: Trainer, metrics: Metrics) -> Metrics:
        assert self.best is not None
        if self.best.update(metrics, trainer.step):
            self.best.save(trainer.state_dict(), trainer.run_dir)
            trainer.tracker.log_metrics(self.best.metrics(), trainer.step)
        return {}


@dataclass
class LogGrid(Job):
    """Real / translated / reconstructed (and task) images of fixed validation samples;
    `every=0` draws one at each validation instead."""

    SAMPLES: ClassVar[int] = 4

    samples: dict[str, list[DomainBatch]] = field(default_factory=dict)

    def pick_samples(self, data: InputPipeline, device: torch.device,
                     channels_last: bool) -> None:
        """The first `SAMPLES` validation images of each domain, shown at every grid (in
        batches of one size each: under data.preprocess=none sizes may differ)."""
        self.samples = {d: [] for d in DOMAINS}
        for d, batches in self.samples.items():
            for x in data.eval_batches("val", d, batch_size=self.SAMPLES):
                batches.append(x.to(device, channels_last))
                if sum(map(len, batches)) >= self.SAMPLES:
                    break

    def run(self, trainer: Trainer, metrics: Metrics) -> Metrics:
        if trainer.env.is_main:
            path = trainer.run_dir / "grids" / f"step_{trainer.step}.png"
            save_png(render_grid(trainer.model, self.samples), path)
            trainer.tracker.log_image(path, key="grid", step=trainer.step)
        return {}


@dataclass
class SaveCheckpoint(Job):
    """A full-state checkpoint (collective: every rank hands its own state to rank 0)."""

    last_saved: int = -1

    def run(self, trainer: Trainer, metrics: Metrics) -> Metrics:
        if self.last_saved != trainer.step:
            trainer.save_checkpoint()
            self.last_saved = trainer.step
        return {}
