"""What a run writes beside its checkpoints (rank 0): the resolved config, schedule events,
the skipped-files list, status.json and the final generators, each also tracked in MLflow."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from liss import checkpoint
from liss import config as config_lib
from liss.config import Config
from liss.schedule import Event
from liss.tracking import Tracker, git_commit


@dataclass
class RunFolder:
    path: Path
    tracker: Tracker

    def write_config(self, cfg: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        config_lib.save(cfg, self.path / "config.yaml")

    def write_events(self, events: Sequence[Event]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / "schedule_events.json"
        path.write_text(json.dumps([e.to_dict() for e in events], indent=1))
        self.tracker.log_artifact(path)

    def write_skipped_files(self, skipped: dict[str, list[tuple[Path, str]]]) -> Path:
        """`skipped_files.tsv`: the files data.on_bad_file=skip left out, and why."""
        path = self.path / "skipped_files.tsv"
        lines = [f"{split}\t{p}\t{reason}" for split, items in skipped.items()
                 for p, reason in items]
        path.write_text("split\tpath\treason\n" + "\n".join(lines) + "\n")
        self.tracker.log_artifact(path)
        return path

    def write_generators(self, state: dict, step: int, log_checkpoint: bool) -> None:
        """The trained generators (what `liss translate` needs), optionally the checkpoint."""
        path = self.path / "generators.pt"
        checkpoint.write_atomic(state, path)
        self.tracker.log_artifact(path)
        if log_checkpoint:
            latest = checkpoint.checkpoint_dir(self.path) / f"step_{step}.pt"
            self.tracker.log_artifact(latest, "checkpoints")

    def write_status(self, status: str, step: int) -> None:
        """`status.json`: what launchers read to skip finished points and requeue others."""
        (self.path / "status.json").write_text(json.dumps(
            {"status": status, "step": step, "run_id": self.tracker.run_id,
             "tracking_uri": getattr(self.tracker, "uri", None)}))


def run_tags(cfg: Config, world_size: int, device: str, precision: str) -> dict[str, str]:
    """The MLflow tags a run is filtered and grouped by."""
    c = cfg
    tags = {"schedule": c.schedule.task_schedule, "repr_mode": c.schedule.repr_mode,
            "tasks": ",".join(c.tasks.auxiliary_tasks), "seed": str(c.run.seed),
            "world_size": str(world_size), "device": device, "precision": precision,
            "git_commit": git_commit()}
    return {k: v for k, v in tags.items() if v}
