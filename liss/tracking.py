"""MLflow tracking on rank 0, written by a background thread so the step never waits on it.

Default store: SQLite + artifacts inside the run folder. `tracking.uri` (or
MLFLOW_TRACKING_URI) points elsewhere; `none` disables tracking.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from liss.config import Config

log = logging.getLogger(__name__)
MAX_PARAMS_PER_BATCH, MAX_METRICS_PER_BATCH = 100, 1000


def resolve_uri(cfg: Config) -> str:
    """The tracking URI this run uses ("none" when disabled)."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(cfg.run_dir / 'mlflow.db').resolve()}"


class Tracker:
    """No-op tracker: what every rank but 0 uses, and what `tracking.uri: none` gives."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_image(self, image: np.ndarray, key: str, step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...

    def describe(self) -> str:
        return "tracking off"


class MlflowTracker(Tracker):
    def __init__(self, cfg: Config, run_id: str | None = None):
        from mlflow import MlflowClient

        self.uri = resolve_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri)
        if run_id is None:
            experiment_id = self._experiment(cfg)
            tags = {}
            parent = cfg.tracking.parent_run_id or os.environ.get("LISS_PARENT_RUN_ID", "")
            sweep = cfg.tracking.sweep_id or os.environ.get("LISS_SWEEP_ID", "")
            if parent:
                tags["mlflow.parentRunId"] = parent
            if sweep:
                tags["sweep_id"] = sweep
            run = self.client.create_run(experiment_id, run_name=cfg.run.name, tags=tags)
            run_id = run.info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._worker, name="mlflow-writer", daemon=True)
        self._thread.start()

    def _experiment(self, cfg: Config) -> str:
        name = cfg.tracking.experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifacts = None
        if self.uri.startswith("sqlite:") and not cfg.tracking.uri:
            artifacts = (cfg.run_dir / "mlartifacts").resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=artifacts)

    # ------------------------------------------------------------------ background writer

    def _worker(self) -> None:
        while (op := self._queue.get()) is not None:
            try:
                op()
            except Exception as e:  # tracking must never take training down
                log.warning("mlflow: %s failed: %s", getattr(op, "__name__", "op"), e)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _submit(self, op: Callable[[], None]) -> None:
        self._queue.put(op)

    # ------------------------------------------------------------------ API

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            chunk = items[i:i + MAX_PARAMS_PER_BATCH]
            self._submit(lambda c=chunk: self.client.log_batch(self.run_id, params=c))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            chunk = items[i:i + MAX_METRICS_PER_BATCH]
            self._submit(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c))

    def log_image(self, image: np.ndarray, key: str, step: int) -> None:
        self._submit(lambda: self.client.log_image(self.run_id, image, key=key, step=step))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._submit(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self._submit(lambda k=k, v=v: self.client.set_tag(self.run_id, k, str(v)))

    def flush(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self, status: str = "FINISHED") -> None:
        self._submit(lambda: self.client.set_terminated(self.run_id, status))
        self._queue.put(None)
        self._thread.join(timeout=120)

    def describe(self) -> str:
        if self.uri.startswith("sqlite:"):
            return (f"mlflow ui --backend-store-uri {self.uri} --port 5000   "
                    f"(run {self.run_id})")
        return f"{self.uri} (run {self.run_id})"


def start_tracking(cfg: Config, is_main: bool, run_id: str | None = None) -> Tracker:
    if not is_main or resolve_uri(cfg) == "none":
        return Tracker()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    return MlflowTracker(cfg, run_id)
