"""`liss runs compare`: a terminal table of finished runs, read back from the store each run
folder logged to (the one store of their `run.dir`, or a run folder's own store written by an
earlier version), whatever the working directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from liss.cli import main
from liss.store import store_uri

SWITCHING = ["train.max_steps=4", "tasks.auxiliary_tasks=depth,gray",
             "schedule.depth_loss_threshold=100", "schedule.gray_loss_threshold=100"]


def test_compare_reads_run_folders_from_anywhere(tiny_overrides: list[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # run.dir is relative, as in the shipped configs
    base = [*tiny_overrides, "run.dir=runs", *SWITCHING]
    assert main(["train", *base, "run.name=seq", "schedule.task_schedule=sequential"]) == 0
    assert main(["train", *base, "run.name=par", "schedule.task_schedule=parallel"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    runs = tmp_path / "runs"
    assert not (runs / "seq" / "mlflow.db").exists() and not (runs / "par" / "mlflow.db").exists()
    store = MlflowClient(store_uri(runs))  # both runs in one store: one `mlflow ui`
    in_store = {r.info.run_name: r.info.run_id for r in store.search_runs(
        [store.get_experiment_by_name("liss").experiment_id])}
    assert in_store == {name: json.loads((runs / name / "status.json").read_text())["run_id"]
                        for name in ("seq", "par")}
    for folders in ([str(runs / "seq"), str(runs / "par")], [str(runs)]):
        assert main(["runs", "compare", *folders]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:5] == ["run", "schedule", "status", "steps", "phase"]
        by_name = {line.split()[0]: line for line in lines[2:4]}
        rows = {name: line.split() for name, line in by_name.items()}
        assert rows["seq"][1:5] == ["sequential", "FINISHED", "4", "0,2,4"]
        assert rows["par"][1:5] == ["parallel", "FINISHED", "4", "0"]
    metrics = store.get_run(in_store["seq"]).data.metrics
    depth = f"{metrics['val/A/depth_loss']:.3g} / {metrics['val/B/depth_loss']:.3g}"
    assert depth in by_name["seq"]
    assert list(elsewhere.iterdir()) == []  # no stray store created where it was run from


def test_a_run_folder_of_an_earlier_version_resumes_into_its_own_store(
        tiny_overrides: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "runs" / "tiny"
    own = store_uri(run_dir)  # where earlier versions logged by default
    assert main(["train", *tiny_overrides, "train.max_steps=2", f"tracking.uri={own}"]) == 0
    first = json.loads((run_dir / "status.json").read_text())["run_id"]
    assert main(["train", *tiny_overrides, "train.max_steps=4"]) == 0  # today's default
    assert json.loads((run_dir / "status.json").read_text()) == {
        "status": "completed", "step": 4, "run_id": first, "tracking_uri": own}
    assert not (tmp_path / "runs" / "mlflow.db").exists(), "no project store for it"
    client = MlflowClient(own)
    steps = [m.step for m in client.get_metric_history(first, "schedule/phase")]
    assert max(steps) == 4 and client.get_run(first).info.status == "FINISHED"
    capsys.readouterr()
    assert main(["runs", "compare", str(run_dir)]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:4] == [
        "tiny", "parallel", "FINISHED", "4"]


def test_compare_an_untracked_run_says_so(tiny_overrides: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *tiny_overrides, "train.max_steps=2", "tracking.uri=none"]) == 0
    run_dir = Path(next(o for o in tiny_overrides if o.startswith("run.dir="))[8:]) / "tiny"
    assert main(["runs", "compare", str(run_dir)]) == 2
    assert "not tracked (tracking.uri=none)" in capsys.readouterr().err


def test_compare_an_unknown_run_id_is_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    uri = store_uri(tmp_path)
    assert main(["runs", "compare", "0123abcd", "--uri", uri]) == 2
    err = capsys.readouterr().err
    assert err == f"liss: config error: runs='0123abcd': no such run in {uri}\n"


def test_compare_finds_the_store_in_the_environment(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(tmp_path))
    assert main(["runs", "compare", "--sweep", "s-0"]) == 2  # looked there: nothing tagged
    assert "runs='s-0': no runs found" in capsys.readouterr().err
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert main(["runs", "compare", "--sweep", "s-0"]) == 2
    assert "needs --uri or MLFLOW_TRACKING_URI" in capsys.readouterr().err
