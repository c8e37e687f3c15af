"""Which MLflow store a run logs to, and opening a SQLite one from many processes at once.

By default every run under `run.dir` (ad-hoc runs and sweeps alike) logs to one SQLite store
beside them, `<run.dir>/mlflow.db`, with artifacts in `<run.dir>/mlartifacts`, so one
`mlflow ui` shows them side by side. `tracking.uri`, then `$MLFLOW_TRACKING_URI`, win.

Run folders written by earlier versions hold their own store, `<run folder>/mlflow.db`; such
a folder keeps using it (resume, `liss runs compare|forgetting|sync`). A run folder's own
store is also where records that a tracking server never took end up (`liss runs sync`).

SQLite and several writers (a local sweep with `--max-parallel`): MLflow creates a new
store by running its schema migrations, which fails when two processes do it on one file at
once, so the creation is serialised with an exclusive `flock` on `<db>.lock` (which then
says the store exists, so later openers take no lock). Writes that meet a locked database
are retried by the tracker (`is_busy`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from liss.config import Config

if TYPE_CHECKING:
    from mlflow import MlflowClient

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
SQLITE = "sqlite:///"
CREATED = "mlflow store created\n"  # the lock file's content once the store exists


def sqlite_uri(db: Path) -> str:
    return f"{SQLITE}{db.resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI, else None."""
    return Path(uri.removeprefix(SQLITE)) if uri.startswith(SQLITE) else None


def store_uri(folder: Path) -> str:
    """The SQLite store kept in `folder`: a project's (`run.dir`, shared by its runs), or a
    run folder's own (earlier versions' default, and the outage fallback)."""
    return sqlite_uri(folder / STORE_FILE)


def has_store(folder: Path) -> bool:
    return (folder / STORE_FILE).is_file()


def configured_uri(cfg: Config) -> str:
    """`tracking.uri`, else `$MLFLOW_TRACKING_URI`, else '' (the default store)."""
    return cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI", "")


def resolve_uri(cfg: Config) -> str:
    """The tracking URI this run uses ("none" when disabled)."""
    if configured_uri(cfg):
        return configured_uri(cfg)
    if has_store(cfg.run_dir):  # a run folder of an earlier version: continue it there
        return store_uri(cfg.run_dir)
    return store_uri(Path(cfg.run.dir))


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a SQLite store keeps artifacts: beside the database."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACTS_DIR).resolve().as_uri() if db else None


def open_client(uri: str) -> MlflowClient:
    """An MlflowClient; a SQLite store is created (migrated) by one process at a time, and
    marked created in its lock file so that later openers need no lock."""
    from mlflow import MlflowClient

    for noisy in ("alembic", "mlflow.store.db.utils"):  # a line per migration otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    db = sqlite_path(uri)
    if db is None or _created(db):
        return MlflowClient(tracking_uri=uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_file(db), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # creates the tables, or finds those of the process this one waited for
            client = MlflowClient(tracking_uri=uri)
            lock.truncate(0)
            lock.write(CREATED)
            lock.flush()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return client


def _lock_file(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def _created(db: Path) -> bool:
    try:
        return db.is_file() and _lock_file(db).read_text() == CREATED
    except OSError:
        return False


def experiment_id(client: MlflowClient, name: str, artifacts: str | None) -> str:
    """The id of experiment `name`, created if missing, also when another process creates
    it at the same moment."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifacts)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.get_experiment_by_name(name).experiment_id


def is_busy(error: str) -> bool:
    """A SQLite store locked by another writer for longer than MLflow's busy timeout (20 s):
    transient. `error` is the text of the exception (or of MLflow's log line about it)."""
    text = error
    return "database is locked" in text or "database table is locked" in text
