"""A SQLite store locked by another writer for longer than MLflow's busy timeout is contention,
not an outage: the writer thread retries soon and quietly, and every record arrives once.
(Real concurrent writers: test_tracking_concurrency.py.)"""

from __future__ import annotations

import logging
import sqlite3

from mlflow import MlflowClient

from liss.tracking import MlflowTracker, start_tracking


def test_a_locked_store_is_retried_without_an_outage(tiny_config, tmp_path, caplog) -> None:
    cfg = tiny_config(f"tracking.uri=sqlite:///{tmp_path / 'shared.db'}")
    tracker = start_tracking(cfg, is_main=True)
    assert isinstance(tracker, MlflowTracker)
    send, failures = tracker._sink.send, [3]

    def locked_at_first(records):
        if failures[0]:
            failures[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        send(records)

    tracker._sink.send = locked_at_first
    with caplog.at_level(logging.INFO, logger="liss.tracking"):
        for step in range(50):
            tracker.log_metrics({"train/x": float(step)}, step)
        tracker.close()
    assert tracker.busy_retries == 3 and tracker.dropped == 0
    history = MlflowClient(cfg.tracking.uri).get_metric_history(tracker.run_id, "train/x")
    assert sorted(m.step for m in history) == list(range(50))
    levels = {r.levelno for r in caplog.records if r.name == "liss.tracking"}
    assert levels == {logging.INFO}, "one line per episode, no outage warning"
    assert not (cfg.run_dir / "tracking-unsent.jsonl").exists()


def test_mlflow_tracebacks_of_a_locked_store_are_left_out(tiny_config, tmp_path) -> None:
    start_tracking(tiny_config(f"tracking.uri=sqlite:///{tmp_path / 's.db'}"), True).close()
    logger = logging.getLogger("mlflow.store.db.utils")
    locked = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "SQLAlchemy database "
                               "error.\n%s", (sqlite3.OperationalError("database is locked"),),
                               None)
    other = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "disk I/O error", (),
                              None)
    assert [logger.filter(r) for r in (locked, other)] == [False, True]
