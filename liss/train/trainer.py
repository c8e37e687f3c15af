"""The training loop. Per batch: a generator update, then a discriminator update, each one
forward and one backward of a DDP-wrapped step module (`liss.train.steps`); after each step
the periodic jobs (`liss.train.jobs`): logging, validation (which drives the schedule),
evaluation, the best checkpoint, image grids, checkpoints.

The schedule's `Phase` is the only source of truth for what is computed and trained.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from liss import checkpoint, rng
from liss import config as config_lib
from liss.config import Config
from liss.data.batch import Batch
from liss.data.images import BadImageError
from liss.data.layout import DOMAINS
from liss.data.pipeline import InputPipeline, build_pipeline
from liss.distributed import DistEnv, init_distributed, shutdown
from liss.eval.intraining import BestCheckpoint, InTrainingEval
from liss.eval.paired import paired_metrics
from liss.eval.validation import run_validation
from liss.model import LissModel
from liss.pool import ImagePool
from liss.precision import resolve_channels_last, resolve_precision
from liss.schedule import TRANSLATION, Event, Phase, Schedule
from liss.tracking import Tracker, check_uri, start_tracking
from liss.train import jobs
from liss.train.optim import LinearDecay, build_optimizer, optimizer_class
from liss.train.progress import Progress
from liss.train.resume import check_compatible, find_resume_state
from liss.train.run_folder import RunFolder, run_tags
from liss.train.signals import EXIT_PREEMPTED, PreemptionHandler
from liss.train.state import (
    Counters,
    SchedulePosition,
    generators_export,
    process_rng_state,
    restore_rank_state,
)
from liss.train.steps import DiscriminatorStep, GeneratorStep, Side
from liss.train.summary import format_summary

log = logging.getLogger(__name__)
J = TypeVar("J", bound=jobs.Job)


class Trainer:
    def __init__(self, cfg: Config, env: DistEnv):
        optimizer_class(cfg.optim.name)  # needs torch, so not in config.validate; fails early
        self.env, self.run_dir = env, cfg.run_dir
        self.precision = resolve_precision(cfg.train.precision, env.device)
        self.channels_last = resolve_channels_last(cfg.train.channels_last, env.device)
        self.data: InputPipeline = build_pipeline(cfg, rank=env.rank, world_size=env.world_size,
                                                  pin_memory=env.device.type == "cuda")
        self.cfg = cfg = self.data.cfg  # with tasks.auxiliary_tasks=auto resolved

        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
        self.model = LissModel(cfg).to(env.device)
        self.model.prepare_tasks(env.device)
        if self.channels_last:
            self.model.use_channels_last()
        torch.manual_seed(rng.sample_key(cfg.run.seed, env.rank))  # per-rank stream

        self.schedule = Schedule.from_config(cfg)
        self.position = SchedulePosition(self.schedule.initial(), [self.schedule.start_event()])
        self.sides = self._sides()
        self._apply_phase()
        self.pools = {d: ImagePool(cfg.loss.pool_size, seed=rng.sample_key(cfg.run.seed,
                                                                            env.rank, ord(d)))
                      for d in DOMAINS}
        self.decay = LinearDecay(cfg.optim.n_epochs, cfg.optim.n_epochs_decay)
        self.counters = Counters()
        self.tracker: Tracker = Tracker()
        self.folder = RunFolder(self.run_dir, self.tracker)
        self.progress = Progress(cfg.train.max_steps, enabled=cfg.train.progress,
                                 is_main=env.is_main)
        self.first_metrics: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}
        self.jobs = self._jobs()

    def _sides(self) -> dict[str, Side]:
        """The G update (generators and their task heads, per-task lr groups) and the D
        update (every discriminator), each with its own optimizer and grad scaler."""
        m, c = self.model, self.cfg
        groups = {"G": m.generator_parameter_groups(),
                  "D": [{"group_name": "discriminators", "params": m.discriminator_parameters()}]}
        steps = {"G": GeneratorStep(m), "D": DiscriminatorStep(m)}
        return {name: Side(name, steps[name], build_optimizer(groups[name], c.optim),
                           self.precision.grad_scaler(), self.env.device, c.train.compile)
                for name in ("G", "D")}

    def _jobs(self) -> list[jobs.Job]:
        t, main = self.cfg.train, self.env.is_main
        # rank 0 only: the others wait at their next collective while it evaluates
        evaluator = InTrainingEval(self.cfg, self.data, self.env.device, fid=t.eval_fid,
                                   inception_weights=t.inception_weights) \
            if t.eval_every and main else None
        best = BestCheckpoint.for_run(self.run_dir, t.best_metric, t.best_mode) \
            if t.best_metric and main else None
        return [jobs.LogTraining(t.log_every), jobs.Validate(t.val_every),
                jobs.Evaluate(t.eval_every, evaluator=evaluator), jobs.KeepBest(1, best=best),
                jobs.LogGrid(t.grid_every or t.val_every), jobs.SaveCheckpoint(t.ckpt_every)]

    @property
    def step(self) -> int:
        return self.counters.step

    @step.setter
    def step(self, value: int) -> None:
        self.counters.step = value

    @property
    def phase(self) -> Phase:
        return self.position.phase

    # ------------------------------------------------------------------ the step

    def train_step(self, batch: Batch) -> dict[str, Tensor]:
        """One G update then one D update; returns detached loss terms (no host sync)."""
        G, D, phase = self.sides["G"], self.sides["D"], self.phase
        with self.precision.autocast():
            gen = G(batch, phase)
        G.update(gen.total)
        losses = dict(gen.terms)
        if D.active:
            # the pools hold translation fakes for D_A/D_B: query them only when those train
            pooled = ({d: self.pools[d].query(fake) for d, fake in gen.fakes.items()}
                      if self.model.trains_translation_discriminators(phase) else {})
            with self.precision.autocast():
                d_terms = D(batch, gen, pooled, phase)
            D.update(torch.stack([t.float() for t in d_terms.values()]).sum())
            losses.update(d_terms)
        return {k: v.detach() for k, v in losses.items()}

    def _apply_phase(self) -> None:
        """`requires_grad` as the phase says, then re-wrap both step modules for it."""
        self.model.apply_phase(self.phase)
        for side in self.sides.values():
            side.wrap()

    # ------------------------------------------------------------------ schedule

    def _enter(self, phase: Phase, event: Event) -> None:
        if event.update_reference:
            self.model.update_reference(self.cfg.schedule.encoder_merge_ratio)
        self.position.phase = phase
        self.position.events.append(event)
        self._apply_phase()
        if self.env.is_main:
            self.folder.write_events(self.events)
            self.progress.message(f"[step {event.step}] phase {event.phase} "
                                  f"{'+'.join(event.active)}: {event.reason}")

    @property
    def events(self) -> list[Event]:
        return self.position.events

    def advance_schedule(self, metrics: dict[str, float]) -> Event | None:
        """Feed validation metrics to the schedule; apply the phase change, if any."""
        phase, event = self.schedule.update(self.phase, metrics, self.step)
        if event is not None:
            self._enter(phase, event)
        return event

    def validate(self, advance: bool = True) -> dict[str, float]:
        """Validation metrics, then (if `advance`) at most one schedule transition."""
        self.env.broadcast_buffers(self.model)  # rank 0's running statistics everywhere
        metrics = run_validation(self.model, self.data, self.env, self.precision,
                                 self.channels_last)
        if advance:
            self.advance_schedule(metrics)
        metrics["schedule/phase"] = float(self.phase.index)
        self.tracker.log_metrics(metrics, self.step)
        self.first_metrics = self.first_metrics or metrics
        self.last_metrics = metrics
        return metrics

    # ------------------------------------------------------------------ state

    def rank_state(self) -> dict[str, Any]:
        """What differs between ranks: image pools and RNG streams (each rank seeds its own)."""
        return {"pools": {d: p.state_dict() for d, p in self.pools.items()},
                "rng": process_rng_state()}

    def state_dict(self, ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The full state; `ranks` is every rank's `rank_state()` (default: this rank's)."""
        return {
            "format": checkpoint.FORMAT,
            "step": self.step,
            "config": self.cfg.to_dict(),
            "models": self.model.network_states(),
            "sides": {name: side.state_dict() for name, side in self.sides.items()},
            "ranks": ranks or [self.rank_state()],
            "schedule": self.position.state_dict(),
            "trainer": {**self.counters.state_dict(), **self.decay.state_dict(),
                        "sample_position": self.step * self.data.sampler().global_batch},
            "tracking": {"run_id": self.tracker.run_id or ""},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["format"] != checkpoint.FORMAT:
            raise checkpoint.CheckpointError(
                f"checkpoint format {state['format']} was written before liss's DDP core and "
                f"cannot be resumed (format {checkpoint.FORMAT}); liss eval/translate/export "
                "still read it")
        self.model.load_network_states(state["models"])
        self.position.load_state_dict(state["schedule"])
        self._apply_phase()
        for name, side in self.sides.items():
            side.load_state_dict(state["sides"][name])
        restore_rank_state(state["ranks"], self.env.rank, self.env.world_size, self.pools,
                           self.env.device)
        self.counters.load_state_dict(state["trainer"])
        self.decay.load_state_dict(state["trainer"])

    def save_checkpoint(self) -> Path | None:
        """Collective: every rank hands its pools and RNG to rank 0, which writes the file."""
        self.env.broadcast_buffers(self.model)
        ranks = self.env.gather_object(self.rank_state())
        if not self.env.is_main:
            return None
        return checkpoint.save(self.state_dict(ranks), self.run_dir,
                               self.cfg.train.keep_checkpoints)

    # ------------------------------------------------------------------ the loop

    def _finished(self) -> bool:
        cap = self.cfg.train.max_steps
        return (cap > 0 and self.step >= cap) or self.decay.finished

    def _end_epochs(self) -> None:
        done = self.step * self.data.sampler().global_batch // self.data.epoch_length
        while self.counters.epochs_done < done:
            self.counters.epochs_done += 1
            self.decay.end_of_epoch(self.counters.epochs_done, TRANSLATION in self.phase,
                                    [side.optimizer for side in self.sides.values()])

    def _batches(self) -> Iterator[Batch]:
        for batch in self.data.train_batches(start_step=self.step):
            yield batch.to(self.env.device, self.channels_last)

    def fit(self) -> int:
        """Resume or start, train until done or preempted; returns the process exit code."""
        resumed = self._resume()
        if resumed is not None and self._finished():
            self.progress.message(f"{self.run_dir} is already complete at step {self.step} "
                                  "(raise train.max_steps to extend it, or pick a new run.name)")
            return 0
        self._open_run(resumed)
        status, completed = "FAILED", False
        try:
            with PreemptionHandler() as preemption:
                completed = self._loop(preemption)
            if completed and self.env.is_main:
                self._finish()
            status = "FINISHED" if completed else "KILLED"
        finally:
            self.progress.close()
            if self.env.is_main:
                self.tracker.close(status)
        if self.env.is_main:
            self.folder.write_status("completed" if completed else "preempted", self.step)
        if completed:
            return 0
        self.progress.message(f"preempted at step {self.step}: checkpoint written, exit "
                              f"{EXIT_PREEMPTED} (resume with train.resume=auto)")
        return EXIT_PREEMPTED

    def _resume(self) -> tuple[Path, dict[str, Any]] | None:
        """Load the checkpoint `train.resume` picks, if any, once its config is compatible."""
        resumed = find_resume_state(self.cfg, self.env, self.run_dir)
        if resumed is not None:
            path, state = resumed
            check_compatible(self.cfg, state["config"], path)
            self.load_state_dict(state)
        return resumed

    def _open_run(self, resumed: tuple[Path, dict[str, Any]] | None) -> None:
        """The run folder, the MLflow run (new, or the checkpoint's) and the grid samples."""
        cfg, main = self.cfg, self.env.is_main
        check_uri(cfg)  # a store that cannot work is refused before the run folder exists
        run_id = (resumed[1]["tracking"]["run_id"] or None) if resumed else None
        self.tracker = start_tracking(cfg, main, run_id=run_id)
        self.folder = RunFolder(self.run_dir, self.tracker)
        if not main:
            return
        self.folder.write_config(cfg)
        if self.data.tasks is not None:
            names = ", ".join(cfg.tasks.auxiliary_tasks) or "none (translation only)"
            self.progress.message(f"tasks: {names} ({self.data.tasks.reason})")
        if self.data.skipped_count:
            path = self.folder.write_skipped_files(self.data.skipped_files)
            self.progress.message(f"data.on_bad_file=skip: {self.data.skipped_count} unusable "
                                  f"files left out, listed in {path}")
        if resumed is None:
            self.tracker.log_params(config_lib.flatten(cfg))
            self.tracker.set_tags(run_tags(cfg, self.env.world_size, str(self.env.device),
                                           self.precision.name))
            if self.data.tasks is not None:
                self.tracker.set_tags({"tasks_reason": self.data.tasks.reason})
            self.tracker.log_artifact(self.run_dir / "config.yaml")
            self.folder.write_events(self.events)
        else:
            self.progress.message(f"resumed from {resumed[0]} at step {self.step}")
        self._job(jobs.LogGrid).pick_samples(self.data, self.env.device, self.channels_last)

    def _finish(self) -> None:
        """Rank 0, after the last step: generators, test-split truth scores, the report."""
        self.folder.write_generators(
            generators_export(self.model.networks(), self.cfg, self.step, checkpoint.FORMAT),
            self.step, self.cfg.tracking.log_checkpoints)
        d, test = self.cfg.data, self.data.splits["test"]
        test_metrics = paired_metrics(self.model, Path(d.root), {"A": test.A, "B": test.B},
                                      prep=self.data.prep, direction=d.direction,
                                      device=self.env.device)
        self.tracker.log_metrics(test_metrics, self.step)
        self.progress.message(format_summary(self.first_metrics, self.last_metrics,
                                             test_metrics, self.events, d.direction))

    def _job(self, kind: type[J]) -> J:
        return next(j for j in self.jobs if isinstance(j, kind))

    def _loop(self, preemption: PreemptionHandler) -> bool:
        """Train until done (True) or preempted (False, after a checkpoint)."""
        batches = self._batches()
        while not self._finished():
            start = time.monotonic()
            batch, failure = self._next_batch(batches)
            data_wait = time.monotonic() - start
            # one host-side agreement per step: a signal or an unreadable file on any rank
            # stops every rank here, between steps, where the state is consistent
            preempted, data_failed = self.env.any_rank(preemption.requested, failure is not None)
            if preempted or data_failed:
                self._stop(data_failed, failure)
                return False
            losses = self.train_step(batch)
            self.counters.step += 1
            self._end_epochs()
            final, metrics = self._finished(), {}
            for job in self.jobs:
                job.observe(self, losses, data_wait)
                if job.due(self.step, final):
                    metrics |= job.run(self, metrics)
        return True

    def _stop(self, data_failed: bool, failure: BadImageError | None) -> None:
        """Checkpoint (unless this step's is written); on a data failure, raise after it."""
        self._job(jobs.SaveCheckpoint).run(self, {})
        if data_failed:
            raise BadImageError(f"{failure or 'another rank could not read a file'} "
                                f"(checkpoint saved at step {self.step}: fix or remove the "
                                "file, or set data.on_bad_file=skip, then resume with "
                                "train.resume=auto)")

    @staticmethod
    def _next_batch(batches: Iterator[Batch]) -> tuple[Batch | None, BadImageError | None]:
        try:
            return next(batches), None
        except BadImageError as e:
            return None, e


def train(cfg: Config) -> int:
    """`liss train`: returns the process exit code (0 = the run completed)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    env = init_distributed(cfg.train.device)
    try:
        trainer = Trainer(cfg, env)
        code = trainer.fit()
        if env.is_main:
            print(f"run folder: {cfg.run_dir.resolve()}")
            print(f"view it:    {trainer.tracker.describe()}")
        return code
    finally:
        shutdown()
