"""The training loop. Per batch: a generator step with the discriminators frozen, then a
discriminator step; every `val_every` steps a validation whose metrics drive the schedule.

The schedule's `Phase` is the only source of truth for what is computed and trained.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from liss import config as config_lib
from liss import rng
from liss.config import Config
from liss.data.batch import Batch
from liss.data.images import BadImageError
from liss.data.layout import DOMAINS
from liss.data.pipeline import InputPipeline, build_pipeline
from liss.eval.intraining import BestCheckpoint, InTrainingEval
from liss.eval.paired import paired_metrics
from liss.model import LissModel
from liss.pool import ImagePool
from liss.schedule import TRANSLATION, Event, Phase, Schedule
from liss.tracking import Tracker, check_uri, git_commit, start_tracking
from liss.train import checkpoint
from liss.train.distributed import DistEnv, init_distributed, shutdown
from liss.train.grid import render_grid, save_png
from liss.train.optim import LinearDecay, build_optimizer, optimizer_class
from liss.train.precision import resolve_channels_last, resolve_precision
from liss.train.progress import Progress
from liss.train.resume import check_compatible, find_resume_state
from liss.train.signals import EXIT_PREEMPTED, PreemptionHandler
from liss.train.summary import format_summary
from liss.train.system import system_metrics
from liss.train.validate import run_validation

GRID_SAMPLES = 4
log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg: Config, env: DistEnv):
        optimizer_class(cfg.optim.name)  # needs torch, so not in config.validate; fails early
        self.cfg, self.env = cfg, env
        self.run_dir = cfg.run_dir
        self.precision = resolve_precision(cfg.train.precision, env.device)
        self.channels_last = resolve_channels_last(cfg.train.channels_last, env.device)
        self.data: InputPipeline = build_pipeline(cfg, rank=env.rank, world_size=env.world_size,
                                                  pin_memory=env.device.type == "cuda")

        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
        self.model = LissModel(cfg).to(env.device)
        if self.channels_last:
            self.model.use_channels_last()
        if cfg.train.compile:
            for net in self.model.networks().values():
                net.compile()  # in place: state_dict keys, hence checkpoints, are unchanged
        torch.manual_seed(rng.sample_key(cfg.run.seed, env.rank))  # per-rank stream

        self.schedule = Schedule.from_config(cfg)
        self.phase: Phase = self.schedule.initial()
        self.events: list[Event] = [self.schedule.start_event()]
        self.model.apply_phase(self.phase)

        self.opt_G = build_optimizer(self.model.generator_parameter_groups(), cfg.optim)
        self.opt_D = build_optimizer([{"group_name": "discriminators",
                                       "params": self.model.discriminator_parameters()}],
                                     cfg.optim)
        self.scaler_G = self.precision.grad_scaler()
        self.scaler_D = self.precision.grad_scaler()
        self.pools = {d: ImagePool(cfg.loss.pool_size, seed=rng.sample_key(cfg.run.seed,
                                                                            env.rank, ord(d)))
                      for d in DOMAINS}
        self.decay = LinearDecay(cfg.optim.n_epochs, cfg.optim.n_epochs_decay)
        self.step = 0
        self.epochs_done = 0
        self.skipped = {"G": torch.zeros((), device=env.device),
                        "D": torch.zeros((), device=env.device)}
        self.tracker: Tracker = Tracker()
        t = cfg.train
        # rank 0 only: the others wait at their next collective while it evaluates
        self.evaluator = InTrainingEval(cfg, self.data, env.device, fid=t.eval_fid,
                                        inception_weights=t.inception_weights) \
            if t.eval_every and env.is_main else None
        self.best = BestCheckpoint.for_run(self.run_dir, t.best_metric, t.best_mode) \
            if t.best_metric and env.is_main else None
        self.progress = Progress(cfg.train.max_steps, enabled=cfg.train.progress,
                                 is_main=env.is_main)
        self.first_metrics: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ the step

    def train_step(self, batch: Batch) -> dict[str, Tensor]:
        """One G update then one D update; returns detached loss terms (no host sync)."""
        model, phase = self.model, self.phase
        model.discriminators_trainable(None)
        with self.precision.autocast():
            gen = model.generator_losses(batch, phase)
        self._update("G", self.opt_G, self.scaler_G, gen.total)
        losses = dict(gen.terms)

        if model.discriminators_trainable(phase):
            pooled = {d: self.pools[d].query(fake) for d, fake in gen.fakes.items()}
            with self.precision.autocast():
                d_terms = model.discriminator_losses(batch, gen, pooled, phase)
            self._update("D", self.opt_D, self.scaler_D, torch.stack(
                [t.float() for t in d_terms.values()]).sum())
            losses.update(d_terms)
        return {k: v.detach() for k, v in losses.items()}

    def _update(self, name: str, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                loss: Tensor) -> None:
        opt.zero_grad(set_to_none=True)  # frozen / inactive parameters keep grad None
        scaler.scale(loss).backward()
        self.env.all_reduce_gradients(p for g in opt.param_groups for p in g["params"])
        scaler.step(opt)
        if scaler.is_enabled():  # fp16: count steps skipped for inf/nan gradients
            found = scaler._found_inf_per_device(opt)
            self.skipped[name] += sum(v.to(self.skipped[name].device) for v in found.values())
        scaler.update()

    # ------------------------------------------------------------------ schedule

    def _enter(self, phase: Phase, event: Event) -> None:
        if event.update_reference:
            self.model.update_reference(self.cfg.schedule.encoder_merge_ratio)
        self.phase = phase
        self.model.apply_phase(phase)
        self.events.append(event)
        if self.env.is_main:
            self._write_events()
            self.progress.message(f"[step {event.step}] phase {event.phase} "
                                  f"{'+'.join(event.active)}: {event.reason}")

    def _write_events(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "schedule_events.json"
        path.write_text(json.dumps([e.to_dict() for e in self.events], indent=1))
        self.tracker.log_artifact(path)

    def advance_schedule(self, metrics: dict[str, float]) -> Event | None:
        """Feed validation metrics to the schedule; apply the phase change, if any."""
        phase, event = self.schedule.update(self.phase, metrics, self.step)
        if event is not None:
            self._enter(phase, event)
        return event

    def validate(self, advance: bool = True) -> dict[str, float]:
        """Validation metrics, then (if `advance`) at most one schedule transition."""
        metrics = run_validation(self.model, self.data, self.env, self.precision,
                                 self.channels_last)
        if advance:
            self.advance_schedule(metrics)
        metrics["schedule/phase"] = float(self.phase.index)
        self.tracker.log_metrics(metrics, self.step)
        self.first_metrics = self.first_metrics or metrics
        self.last_metrics = metrics
        return metrics

    def evaluate_test(self) -> dict[str, float]:
        """Paired ground-truth scores on the test split, where the dataset has truth."""
        if not self.env.is_main:
            return {}
        d = self.cfg.data
        test = self.data.splits["test"]
        metrics = paired_metrics(self.model, Path(d.root), {"A": test.A, "B": test.B},
                                 load_size=d.load_size, crop_size=d.crop_size,
                                 direction=d.direction, device=self.env.device)
        self.tracker.log_metrics(metrics, self.step)
        return metrics

    # ------------------------------------------------------------------ state

    def rank_state(self) -> dict[str, Any]:
        """What differs between ranks: image pools and RNG streams (each rank seeds its own)."""
        return {"pools": {d: p.state_dict() for d, p in self.pools.items()},
                "rng": checkpoint.rng_state()}

    def state_dict(self, ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The full state; `ranks` is every rank's `rank_state()` (default: this rank's)."""
        return {
            "format": checkpoint.FORMAT,
            "step": self.step,
            "config": self.cfg.to_dict(),
            "models": {k: v.state_dict() for k, v in self.model.networks().items()},
            "optimizers": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
            "scalers": {"G": self.scaler_G.state_dict(), "D": self.scaler_D.state_dict()},
            "ranks": ranks or [self.rank_state()],
            "schedule": {"phase": self.phase.to_dict(),
                         "events": [e.to_dict() for e in self.events]},
            "trainer": {"epochs_done": self.epochs_done,
                        "decay_epochs": self.decay.decay_epochs,
                        "sample_position": self.step * self.data.sampler().global_batch,
                        "skipped": {k: v.cpu() for k, v in self.skipped.items()}},
            "tracking": {"run_id": self.tracker.run_id or ""},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "E_A_ref" in state["models"]:
            self.model.build_reference_slots()
        nets = self.model.networks()
        missing = sorted(set(nets) - set(state["models"]))
        if missing:
            raise checkpoint.CheckpointError(f"checkpoint lacks networks {missing}")
        for name, net in nets.items():
            net.load_state_dict(state["models"][name])
        self.phase = Phase.from_dict(state["schedule"]["phase"])
        self.events = [Event.from_dict(e) for e in state["schedule"]["events"]]
        self.model.apply_phase(self.phase)
        self.opt_G.load_state_dict(state["optimizers"]["G"])
        self.opt_D.load_state_dict(state["optimizers"]["D"])
        self.scaler_G.load_state_dict(state["scalers"]["G"])
        self.scaler_D.load_state_dict(state["scalers"]["D"])
        self._load_rank_state(state["ranks"])
        t = state["trainer"]
        self.step = int(state["step"])
        self.epochs_done = int(t["epochs_done"])
        self.decay.decay_epochs = int(t["decay_epochs"])
        for k, v in t["skipped"].items():
            self.skipped[k] = v.to(self.env.device)

    def _load_rank_state(self, ranks: list[dict[str, Any]]) -> None:
        """This rank's pools and RNG. Saved by another world size (or best.pt, which holds
        rank 0's only), rank 0 takes the first entry and the others keep their fresh seeds."""
        env = self.env
        if len(ranks) != env.world_size:
            if not env.is_main:
                return
            log.warning("checkpoint holds pools and RNG of %d rank(s), this run has %d: "
                        "rank 0 restores the first, the others start theirs afresh",
                        len(ranks), env.world_size)
        mine = ranks[env.rank]
        for d, pool in self.pools.items():
            pool.load_state_dict(mine["pools"][d], env.device)
        checkpoint.set_rng_state(mine["rng"])

    def save_checkpoint(self) -> Path | None:
        """Collective: every rank hands its pools and RNG to rank 0, which writes the file."""
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
        while self.epochs_done < done:
            self.epochs_done += 1
            self.decay.end_of_epoch(self.epochs_done, TRANSLATION in self.phase,
                                    [self.opt_G, self.opt_D])

    def _batches(self) -> Iterator[Batch]:
        for batch in self.data.train_batches(start_step=self.step):
            yield batch.to(self.env.device, self.channels_last)

    def _grid_samples(self) -> dict:
        out = {}
        for d in DOMAINS:
            batches = iter(self.data.eval_batches("val", d, batch_size=GRID_SAMPLES))
            out[d] = next(batches).to(self.env.device, self.channels_last)
        return out

    def _log_grid(self, samples: dict) -> None:
        path = self.run_dir / "grids" / f"step_{self.step}.png"
        save_png(render_grid(self.model, samples), path)
        self.tracker.log_image(path, key="grid", step=self.step)

    def fit(self) -> int:
        cfg, env = self.cfg, self.env
        resumed = find_resume_state(cfg, env, self.run_dir)
        if resumed is not None:
            path, state = resumed
            check_compatible(cfg, state["config"], path)
            self.load_state_dict(state)
        if resumed is not None and self._finished():
            self.progress.message(f"{self.run_dir} is already complete at step {self.step} "
                                  "(raise train.max_steps to extend it, or pick a new run.name)")
            return 0
        check_uri(cfg)  # a store that cannot work is refused before the run folder exists
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_lib.save(cfg, self.run_dir / "config.yaml")
        run_id = (resumed[1]["tracking"]["run_id"] or None) if resumed else None
        self.tracker = start_tracking(cfg, env.is_main, run_id=run_id)
        self._report_skipped_files()
        if resumed is None:
            self.tracker.log_params(config_lib.flatten(cfg))
            self.tracker.set_tags(self._tags())
            self.tracker.log_artifact(self.run_dir / "config.yaml")
            if env.is_main:
                self._write_events()
        else:
            self.progress.message(f"resumed from {resumed[0]} at step {self.step}")
        grid_samples = self._grid_samples() if env.is_main else {}

        status = "FAILED"
        try:
            with PreemptionHandler() as preemption:
                completed = self._loop(grid_samples, preemption)
            if completed and env.is_main:
                self._log_final_artifacts()
                test_metrics = self.evaluate_test()
                self.progress.message(format_summary(self.first_metrics, self.last_metrics,
                                                     test_metrics, self.events))
            status = "FINISHED" if completed else "KILLED"
        finally:
            self.progress.close()
            if env.is_main:
                self.tracker.close(status)
        if env.is_main:
            self._write_status("completed" if completed else "preempted")
        if not completed:
            self.progress.message(f"preempted at step {self.step}: checkpoint written, exit "
                                  f"{EXIT_PREEMPTED} (resume with train.resume=auto)")
            return EXIT_PREEMPTED
        return 0

    def _loop(self, grid_samples: dict, preemption: PreemptionHandler) -> bool:
        """Train until done (True) or preempted (False, after a checkpoint)."""
        cfg, env = self.cfg, self.env
        t = cfg.train
        global_batch = cfg.data.batch_size
        running: dict[str, Tensor] = {}
        n_running, data_wait, interval_start = 0, 0.0, time.monotonic()
        batches = self._batches()
        last_saved = -1
        while not self._finished():
            t0 = time.monotonic()
            batch, failure = self._next_batch(batches)
            data_wait += time.monotonic() - t0
            # one host-side agreement per step: a signal or an unreadable file on any rank
            # stops every rank here, between steps, where the state is consistent
            preempted, data_failed = env.any_rank(preemption.requested, failure is not None)
            if preempted or data_failed:
                if last_saved != self.step:
                    self.save_checkpoint()
                if data_failed:
                    raise BadImageError(f"{failure or 'another rank could not read a file'} "
                                        f"(checkpoint saved at step {self.step}: fix or remove "
                                        "the file, or set data.on_bad_file=skip, then resume "
                                        "with train.resume=auto)")
                return False
            losses = self.train_step(batch)
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v
            n_running += 1
            self.step += 1
            self._end_epochs()
            if env.is_main:
                elapsed = time.monotonic() - interval_start
                self.progress.update(self.step, n_running * global_batch / max(elapsed, 1e-9),
                                     "+".join(self.phase.active))
            if self.step % t.log_every == 0 or self._finished():
                elapsed = time.monotonic() - interval_start
                metrics = {f"train/{k}": float(v) / n_running for k, v in running.items()}
                metrics.update(self._perf_metrics(n_running * global_batch, elapsed, data_wait))
                self.tracker.log_metrics(metrics, self.step)
                self.progress.set_losses(metrics, self.step)
                running, n_running, data_wait = {}, 0, 0.0
                interval_start = time.monotonic()
            metrics: dict[str, float] = {}
            if self.step % t.val_every == 0 or self._finished():
                # the schedule moves only on the val_every grid, so a run stopped at
                # max_steps and extended later takes the same path as one run to the end
                metrics = self.validate(advance=self.step % t.val_every == 0)
                if env.is_main and (t.grid_every == 0):
                    self._log_grid(grid_samples)
            if self.evaluator and (self.step % t.eval_every == 0 or self._finished()):
                evaluated = self.evaluator(self.model)
                self.tracker.log_metrics(evaluated, self.step)
                metrics |= evaluated
            if self.best and self.best.update(metrics, self.step):
                self.best.save(self.state_dict(), self.run_dir)
                self.tracker.log_metrics(self.best.metrics(), self.step)
            if env.is_main and t.grid_every and self.step % t.grid_every == 0:
                self._log_grid(grid_samples)
            if self.step % t.ckpt_every == 0 or self._finished():
                self.save_checkpoint()
                last_saved = self.step
        return True

    @staticmethod
    def _next_batch(batches: Iterator[Batch]) -> tuple[Batch | None, BadImageError | None]:
        try:
            return next(batches), None
        except BadImageError as e:
            return None, e

    def _report_skipped_files(self) -> None:
        """With data.on_bad_file=skip: say how many files were left out, list them in the
        run folder (`skipped_files.tsv`) and track that list."""
        if not (self.env.is_main and self.data.skipped_count):
            return
        path = self.run_dir / "skipped_files.tsv"
        lines = [f"{split}\t{p}\t{reason}" for split, items in self.data.skipped_files.items()
                 for p, reason in items]
        path.write_text("split\tpath\treason\n" + "\n".join(lines) + "\n")
        self.progress.message(f"data.on_bad_file=skip: {self.data.skipped_count} unusable "
                              f"files left out, listed in {path}")
        self.tracker.log_artifact(path)

    def _log_final_artifacts(self) -> None:
        """The trained generators (what `liss translate` needs), and optionally the checkpoint."""
        path = self.run_dir / "generators.pt"
        checkpoint.save_generators(self.model, self.cfg, self.step, path)
        self.tracker.log_artifact(path)
        if self.cfg.tracking.log_checkpoints:
            latest = checkpoint.checkpoint_dir(self.run_dir) / f"step_{self.step}.pt"
            self.tracker.log_artifact(latest, "checkpoints")

    def _write_status(self, status: str) -> None:
        """`status.json`: what launchers read to skip finished points and requeue others."""
        (self.run_dir / "status.json").write_text(json.dumps(
            {"status": status, "step": self.step, "run_id": self.tracker.run_id,
             "tracking_uri": getattr(self.tracker, "uri", None)}))

    def _perf_metrics(self, images: int, elapsed: float, data_wait: float) -> dict[str, float]:
        out = {"perf/img_per_s": images / max(elapsed, 1e-9),
               "perf/data_wait_frac": data_wait / max(elapsed, 1e-9),
               "train/epoch": float(self.epochs_done)}
        for g in self.opt_G.param_groups:
            out[f"lr/{g['group_name']}"] = g["lr"]
        out["lr/discriminators"] = self.opt_D.param_groups[0]["lr"]
        if self.precision.name == "fp16":
            out.update({f"train/skipped_steps_{k}": float(v) for k, v in self.skipped.items()})
        if self.cfg.tracking.log_system_metrics:
            out.update(system_metrics(self.env.device))
        out["data/skipped_files"] = float(self.data.skipped_count)  # this rank's
        return out

    def _tags(self) -> dict[str, str]:
        c = self.cfg
        tags = {"schedule": c.schedule.task_schedule, "repr_mode": c.schedule.repr_mode,
                "tasks": ",".join(c.tasks.auxiliary_tasks), "seed": str(c.run.seed),
                "world_size": str(self.env.world_size), "device": str(self.env.device),
                "precision": self.precision.name, "git_commit": git_commit()}
        return {k: v for k, v in tags.items() if v}


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
