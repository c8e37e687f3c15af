"""Tracking URIs that cannot work are refused before training (one line, no run folder), and
a new SQLite folder is accepted. No server, no store. (A real `mlflow server`:
integration/test_tracking_server.py.)"""

from __future__ import annotations

import pytest

from liss.cli import main
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
