"""MLflow tracking on rank 0 that never stops or slows training, and never loses a record.

The training thread only appends `Record`s to a queue. A writer thread sends them in order,
batching metrics. When the store is unreachable (at start or mid-run) the writer keeps the
records and retries with backoff; when the run ends it waits at most
`tracking.flush_timeout` seconds, then writes what a server has not taken into the run
folder's own SQLite store and says how to send it on (`liss runs sync`). A SQLite store
locked by another writer (runs logging to one store at once) is retried too, quietly.

Which store a run uses (by default one SQLite store for every run under `run.dir`):
liss/store.py. `none` disables tracking.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liss.config import Config, ConfigError
from liss.store import (
    artifact_location,
    experiment_id,
    is_busy,
    open_client,
    resolve_uri,
    sqlite_path,
    store_uri,
)

log = logging.getLogger(__name__)
MAX_PARAMS_PER_BATCH, MAX_METRICS_PER_BATCH = 100, 1000
BACKOFF_MAX_S = 30.0
BUSY_BACKOFF_MIN_S, BUSY_BACKOFF_MAX_S = 0.05, 2.0  # a SQLite lock lasts one transaction
REMOTE_RUN_TAG = "liss.remote_run_id"  # on a fallback run: the server run it belongs to
REMOTE_URI_TAG = "liss.remote_uri"


def check_uri(cfg: Config) -> None:
    """Refuse a store that cannot work before training starts (ConfigError)."""
    uri = resolve_uri(cfg)
    if not uri.startswith("sqlite:"):
        return
    if not uri.startswith("sqlite:///"):
        raise ConfigError("tracking.uri", uri, "SQLite URIs are written sqlite:///path/to.db")
    folder = Path(uri.removeprefix("sqlite:///")).parent  # sqlite:////abs, sqlite:///rel
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError("tracking.uri", uri, f"{folder} is not writable ({e.strerror})"
                          ) from None


@dataclass(frozen=True)
class Record:
    """One tracking write, as plain data (so it can wait, be retried, or be re-routed)."""

    kind: str  # params | tags | metrics | artifact | image | status
    data: Any


class Tracker:
    """No-op tracker: what every rank but 0 uses, and what `tracking.uri: none` gives."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_image(self, png: Path, key: str, step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...

    def describe(self) -> str:
        return "tracking off"


class _Sink:
    """Sends records to one MLflow store, creating (or reopening) the run on first use."""

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str],
                 run_id: str | None):
        self.client = open_client(uri)
        self.uri, self.experiment, self.run_name, self.tags = uri, experiment, run_name, tags
        self.run_id, self._reopen = run_id, run_id is not None
        self.experiment_id: str | None = None

    def ensure_run(self) -> str:
        if self.run_id is None:
            self.experiment_id = experiment_id(self.client, self.experiment,
                                               artifact_location(self.uri))
            self.run_id = self.client.create_run(self.experiment_id, run_name=self.run_name,
                                                 tags=self.tags).info.run_id
        elif self._reopen:
            self.client.update_run(self.run_id, status="RUNNING")
            self.experiment_id = self.client.get_run(self.run_id).info.experiment_id
            self._reopen = False
        return self.run_id

    def send(self, records: list[Record]) -> None:
        """Write `records` (all of one kind) in as few calls as the API allows."""
        from mlflow.entities import Metric, Param, RunTag

        run_id, kind = self.ensure_run(), records[0].kind
        if kind == "metrics":
            items = [Metric(*m) for r in records for m in r.data]
            for i in range(0, len(items), MAX_METRICS_PER_BATCH):
                self.client.log_batch(run_id, metrics=items[i:i + MAX_METRICS_PER_BATCH])
        elif kind in ("params", "tags"):
            cls = Param if kind == "params" else RunTag
            items = [cls(k, v) for r in records for k, v in r.data.items()]
            for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
                chunk = items[i:i + MAX_PARAMS_PER_BATCH]
                self.client.log_batch(run_id, **{kind: chunk})
        else:
            for r in records:
                self._send_one(run_id, r)

    def _send_one(self, run_id: str, r: Record) -> None:
        if r.kind == "artifact":
            self.client.log_artifact(run_id, *r.data)
        elif r.kind == "image":
            import numpy as np
            from PIL import Image

            png, key, step = r.data
            with Image.open(png) as im:
                self.client.log_image(run_id, np.asarray(im.convert("RGB")), key=key,
                                      step=step)
        elif r.kind == "status":
            self.client.set_terminated(run_id, r.data)
        else:
            raise ValueError(f"unknown record kind {r.kind!r}")


def _batches(pending: deque[Record]) -> list[Record]:
    """The longest run of same-kind records at the head (metrics up to the batch limit)."""
    head = pending[0]
    out = [head]
    if head.kind in ("metrics", "params", "tags"):
        for r in list(pending)[1:]:
            if r.kind != head.kind or len(out) >= 50:
                break
            out.append(r)
    return out


def _permanent(error: Exception) -> bool:
    """An error that retrying cannot fix (a bad value), as opposed to an outage."""
    code = getattr(error, "error_code", "")
    return code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST")


class MlflowTracker(Tracker):
    def __init__(self, cfg: Config, run_id: str | None = None, tags: Mapping[str, str] = ()):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # we retry ourselves
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.cfg, self.run_dir = cfg, cfg.run_dir
        self.uri = resolve_uri(cfg)
        self._sink = _Sink(self.uri, cfg.tracking.experiment, cfg.run.name, dict(tags), run_id)
        self.run_id = run_id
        self._queue: queue.Queue[Record] = queue.Queue()
        self._pending: deque[Record] = deque()
        self._stop_at: float | None = None
        self._stop = threading.Event()
        self._outage_since: float | None = None
        self.dropped = 0
        self.busy_retries = 0  # sends that met a SQLite store locked by another writer
        self._thread = threading.Thread(target=self._worker, name="mlflow-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ writer thread

    def _worker(self) -> None:
        backoff, busy_backoff = 0.5, BUSY_BACKOFF_MIN_S
        while True:
            self._drain(block=not self._pending and not self._stop.is_set())
            if not self._pending:
                if self._stop.is_set():
                    return
                continue
            if self._stop_at is not None and time.monotonic() > self._stop_at:
                return  # give up: close() re-routes what is left
            batch = _batches(self._pending)
            try:
                self._sink.send(batch)
            except Exception as e:
                if _permanent(e):
                    log.warning("mlflow: dropping a %s record that the store refuses: %s",
                                batch[0].kind, e)
                    self.dropped += 1
                    self._pending.popleft()
                    continue
                if is_busy(str(e)):  # contention, not an outage: retry soon, jittered
                    if busy_backoff == BUSY_BACKOFF_MIN_S:  # once per episode
                        log.info("mlflow: %s is locked by another writer; retrying",
                                 self.uri)
                    self.busy_retries += 1
                    self._sleep(random.uniform(0, busy_backoff))
                    busy_backoff = min(BUSY_BACKOFF_MAX_S, busy_backoff * 2)
                    continue
                self._outage(e)
                self._sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            self.run_id = self._sink.run_id
            for _ in batch:
                self._pending.popleft()
            if self._outage_since is not None:
                log.warning("mlflow: %s is back after %.0f s; sending the %d records kept "
                            "meanwhile", self.uri, time.monotonic() - self._outage_since,
                            len(self._pending))
                self._outage_since = None
            backoff, busy_backoff = 0.5, BUSY_BACKOFF_MIN_S

    def _drain(self, block: bool) -> None:
        try:
            self._pending.append(self._queue.get(timeout=0.5 if block else 0))
            while True:
                self._pending.append(self._queue.get_nowait())
        except queue.Empty:
            pass

    def _outage(self, error: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            log.warning("mlflow: %s unreachable (%s: %s); training goes on and records are "
                        "kept until it answers", self.uri, type(error).__name__, reason)

    def _sleep(self, seconds: float) -> None:
        if self._stop_at is not None:
            seconds = max(0.0, min(seconds, self._stop_at - time.monotonic()))
        time.sleep(seconds)

    # ------------------------------------------------------------------ API (training thread)

    def _put(self, kind: str, data: Any) -> None:
        self._queue.put(Record(kind, data))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._put("params", {k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        self._put("metrics", [(k, float(v), ts, int(step)) for k, v in metrics.items()])

    def log_image(self, png: Path, key: str, step: int) -> None:
        self._put("image", (str(png), key, int(step)))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._put("artifact", (str(path), artifact_path))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._put("tags", {k: str(v) for k, v in tags.items()})

    def close(self, status: str = "FINISHED") -> None:
        """Flush for at most `tracking.flush_timeout` s; re-route what is left, locally."""
        self._put("status", status)
        self._stop_at = time.monotonic() + self.cfg.tracking.flush_timeout
        self._stop.set()
        self._thread.join(timeout=self.cfg.tracking.flush_timeout + 15)
        self._drain(block=False)
        if self._pending:
            self._fallback()

    def _fallback(self) -> None:
        """Write the records a server never took into the run folder's own SQLite store,
        loudly (a local SQLite store that refused them gets a journal instead)."""
        records = list(self._pending)
        if sqlite_path(self.uri) is not None:
            log.error("mlflow: %d records could not be written to %s", len(records), self.uri)
            self._write_journal(records)
            return
        fallback_uri = store_uri(self.run_dir)
        tags = {**self._sink.tags, REMOTE_URI_TAG: self.uri}
        if self._sink.run_id:
            tags[REMOTE_RUN_TAG] = self._sink.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        local = _Sink(fallback_uri, self.cfg.tracking.experiment, self.cfg.run.name, tags, None)
        for kind_run in _group(records):
            local.send(kind_run)
        self._pending.clear()
        print(f"liss: the tracking server {self.uri} did not answer before the run ended: "
              f"{len(records)} tracking records were written to the local store "
              f"{fallback_uri} (run {local.run_id}). View them with `mlflow ui "
              f"--backend-store-uri {fallback_uri}`; send them on with `liss runs sync "
              f"{self.run_dir}` once the server is back.", file=sys.stderr)

    def _write_journal(self, records: list[Record]) -> None:
        path = self.run_dir / "tracking-unsent.jsonl"
        with open(path, "a") as f:
            for r in records:
                f.write(json.dumps({"kind": r.kind, "data": r.data}) + "\n")
        print(f"liss: {len(records)} tracking records could not be written; they are in "
              f"{path}", file=sys.stderr)

    def describe(self) -> str:
        """How to look at this run: the `mlflow ui` command of a SQLite store, else its URL."""
        if self.uri.startswith("sqlite:"):
            return f"mlflow ui --backend-store-uri {self.uri} --port 5000   (run {self.run_id})"
        if self.uri.startswith(("http:", "https:")) and self._sink.experiment_id:
            return (f"{self.uri.rstrip('/')}/#/experiments/{self._sink.experiment_id}/runs/"
                    f"{self.run_id}")
        return f"{self.uri} (run {self.run_id})"


def _group(records: list[Record]) -> list[list[Record]]:
    """Consecutive same-kind records together, order kept."""
    groups: list[list[Record]] = []
    for r in records:
        if groups and groups[-1][0].kind == r.kind and r.kind in ("metrics", "params", "tags"):
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


class _BusyTracebacks(logging.Filter):
    """MLflow logs a traceback for each write that meets a locked SQLite store; the writer
    thread retries those writes and says so in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_busy(record.getMessage())


_BUSY_TRACEBACKS = _BusyTracebacks()


def git_commit() -> str:
    """The commit of the code that runs (with `+dirty` for local changes), or ''."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("+dirty" if dirty.strip() else "")


def run_tags(cfg: Config) -> dict[str, str]:
    """Tags set when a run is created: nesting under a sweep's parent run, and sweep_id."""
    tags = {}
    parent = cfg.tracking.parent_run_id or os.environ.get("LISS_PARENT_RUN_ID", "")
    sweep = cfg.tracking.sweep_id or os.environ.get("LISS_SWEEP_ID", "")
    if parent:
        tags["mlflow.parentRunId"] = parent
    if sweep:
        tags["sweep_id"] = sweep
    return tags


def start_tracking(cfg: Config, is_main: bool, run_id: str | None = None) -> Tracker:
    if not is_main or resolve_uri(cfg) == "none":
        return Tracker()
    logging.getLogger("mlflow.tracking.fluent").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").addFilter(_BUSY_TRACEBACKS)  # once: same object
    return MlflowTracker(cfg, run_id, tags=run_tags(cfg))
