"""Tracking URIs that cannot work are refused before training (one line, no run folder), and
a new SQLite folder is accepted; which store a run logs to (one per `run.dir`, unless the
config or the environment says otherwise, or the run folder is of an earlier version), and
which store a run folder is read back from. No server, no store is opened. (A real `mlflow
server`: integration/test_tracking_server.py; runs in one store: integration/test_runs.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liss.cli import main
from liss.config import ConfigError
from liss.runs import RunRef, refs_from_folder
from liss.store import artifact_location, resolve_uri
from liss.tracking import check_uri


@pytest.mark.parametrize(("uri", "words"), [
    ("ftp://host/x", "unknown scheme 'ftp'"),
    ("sqlite:////proc/liss-test/mlflow.db", "is not writable"),
    ("sqlite:///{tmp}/a-file/mlflow.db", "is not writable"),
    ("sqlite:relative.db", "sqlite:///path"),
])
def test_bad_tracking_uri_is_refused_before_training(uri: str, words: str, tiny_overrides,
                                                     tmp_path, capsys) -> None:
    (tmp_path / "a-file").write_text("a file where a folder should be")
    uri = uri.format(tmp=tmp_path)
    assert main(["train", *tiny_overrides, f"tracking.uri={uri}"]) == 2
    err = capsys.readouterr().err
    assert "tracking.uri" in err and words in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "tiny").exists()  # refused before the run folder exists


def test_check_uri_accepts_a_new_folder(tiny_config, tmp_path) -> None:
    check_uri(tiny_config(f"tracking.uri=sqlite:///{tmp_path}/new/deeper/mlflow.db"))


# ---------------------------------------------------------------------- which store


def test_every_run_under_run_dir_shares_one_store(tiny_config, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a, b = tiny_config("run.name=a"), tiny_config("run.name=b")
    store = tmp_path / "runs" / "mlflow.db"
    assert resolve_uri(a) == resolve_uri(b) == f"sqlite:///{store}"
    assert artifact_location(resolve_uri(a)) == (tmp_path / "runs" / "mlartifacts").as_uri()
    assert artifact_location("http://mlflow:5000") is None


def test_the_environment_and_the_config_win(tiny_config, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert resolve_uri(tiny_config()) == "http://from-env:5000"
    assert resolve_uri(tiny_config("tracking.uri=http://from-cfg:5000")) == \
        "http://from-cfg:5000"
    assert resolve_uri(tiny_config("tracking.uri=none")) == "none"


def test_a_run_folder_of_an_earlier_version_keeps_its_own_store(tiny_config, tmp_path,
                                                                monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    old = tmp_path / "runs" / "old"
    old.mkdir(parents=True)
    (old / "mlflow.db").write_bytes(b"")  # what `liss train` wrote there before
    assert resolve_uri(tiny_config("run.name=old")) == f"sqlite:///{old / 'mlflow.db'}"
    assert resolve_uri(tiny_config("run.name=new")) == \
        f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"


def _run_folder(path: Path, run_id: str = "r1", uri: str | None = None,
                own_store: bool = False) -> Path:
    path.mkdir(parents=True)
    (path / "status.json").write_text(json.dumps(
        {"status": "completed", "step": 2, "run_id": run_id, "tracking_uri": uri}))
    if own_store:
        (path / "mlflow.db").write_bytes(b"")
    return path


def test_a_run_folder_is_read_from_the_store_it_logged_to(tmp_path) -> None:
    project = tmp_path / "runs"
    project.mkdir()
    (project / "mlflow.db").write_bytes(b"")
    shared = f"sqlite:///{project / 'mlflow.db'}"
    new = _run_folder(project / "new", "r-new", shared)
    old = _run_folder(project / "old", "r-old", "sqlite:////gone/old/mlflow.db", own_store=True)
    served = _run_folder(project / "srv", "r-srv", "http://mlflow:5000", own_store=True)
    assert refs_from_folder(new) == [RunRef(shared, "r-new")]
    assert refs_from_folder(old) == [RunRef(f"sqlite:///{old / 'mlflow.db'}", "r-old")]
    assert refs_from_folder(served) == [RunRef("http://mlflow:5000", "r-srv")], (
        "a run folder's own store beside a server run holds its outage records, not the run")


def test_a_moved_project_is_read_from_the_store_above_the_run(tmp_path) -> None:
    moved = tmp_path / "moved"
    (moved / "sweep").mkdir(parents=True)
    (moved / "mlflow.db").write_bytes(b"")
    run = _run_folder(moved / "sweep" / "p1", "r1", "sqlite:////where/it/was/mlflow.db")
    assert refs_from_folder(run) == [RunRef(f"sqlite:///{moved / 'mlflow.db'}", "r1")]


def test_a_folder_of_run_folders_is_a_sweep(tmp_path) -> None:
    sweep = tmp_path / "runs" / "sw"
    for i in (2, 1):
        _run_folder(sweep / f"sw-{i}", f"r{i}", "http://mlflow:5000")
    (sweep / "notes").mkdir()
    assert refs_from_folder(sweep) == [RunRef("http://mlflow:5000", "r1"),
                                       RunRef("http://mlflow:5000", "r2")]
    with pytest.raises(ConfigError, match="neither a run folder"):
        refs_from_folder(sweep / "notes")
