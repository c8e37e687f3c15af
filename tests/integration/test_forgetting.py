"""`liss forgetting`: the table's numbers against MLflow histories written by hand (so every
number is known), against a real sequential training run (its `schedule_events.json` and
metric histories), the figure, and the artifacts logged to the runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from PIL import Image

from liss import config
from liss.cli import main
from liss.eval import showcase

REPO = Path(__file__).resolve().parents[2]
# step -> value; validations at 10, 20, 30, 40; phase starts at 20 and 30
HISTORY = {
    "schedule/phase": {10: 0, 20: 1, 30: 2, 40: 2},
    "val/A/rotation_acc": {10: 0.5, 20: 0.9, 30: 0.8, 40: 0.6},
    "val/B/rotation_acc": {10: 0.4, 20: 0.7, 30: 0.75, 40: 0.72},
    "val/A/depth_loss": {10: 0.8, 20: 0.5, 30: 0.3, 40: 0.45},
    "val/B/depth_loss": {10: 0.9, 20: 0.6, 30: 0.35, 40: 0.3},
}


def handmade_run(uri: str, schedule: str, tasks: str = "rotation,depth",
                 history: dict[str, dict[int, float]] = HISTORY) -> str:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name("liss")
    artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    experiment = found.experiment_id if found else client.create_experiment(
        "liss", artifact_location=artifacts)  # not ./mlruns in the working directory
    run = client.create_run(experiment, run_name=schedule, tags={
        "schedule": schedule, "tasks": tasks, "repr_mode": "freeze"})
    client.log_batch(run.info.run_id, metrics=[
        Metric(key, value, 0, step) for key, points in history.items()
        for step, value in points.items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def rows_of(path: Path) -> dict[tuple[str, str, str], dict]:
    return {(r["run"], r["task"], r["domain"]): r for r in json.loads(path.read_text())}


def test_numbers_from_a_known_history(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    seq = handmade_run(uri, "sequential")
    par = handmade_run(uri, "parallel")
    rep = handmade_run(uri, "representational", history={
        **HISTORY, "schedule/phase": {10: 0, 20: 0, 30: 1, 40: 1}})
    out, table = tmp_path / "fig" / "f.png", tmp_path / "f.json"
    assert main(["forgetting", seq, par, rep, "--uri", uri, "--out", str(out), "--json",
                 str(table)]) == 0
    rows = rows_of(table)
    # sequential: rotation (phase 0) is switched off at 20, depth (phase 1) at 30
    r = rows[("sequential", "rotation", "A")]
    assert (r["off_step"], r["at_off"], r["final_step"], r["final"]) == (20, 0.9, 40, 0.6)
    assert r["forgetting"] == pytest.approx(0.3)  # accuracy lost
    assert rows[("sequential", "rotation", "B")]["forgetting"] == pytest.approx(-0.02)
    d = rows[("sequential", "depth", "A")]
    assert (d["off_step"], d["at_off"], d["final"]) == (30, 0.3, 0.45)
    assert d["forgetting"] == pytest.approx(0.15)  # loss gained
    assert rows[("sequential", "depth", "B")]["forgetting"] == pytest.approx(-0.05)
    # parallel never switches a task off; representational switches all off at once
    assert all(rows[("parallel", t, dom)]["off_step"] is None for t in ("rotation", "depth")
               for dom in "AB")
    assert rows[("parallel", "depth", "A")]["final"] == 0.45
    assert rows[("representational", "rotation", "A")]["off_step"] == 30
    assert rows[("representational", "rotation", "A")]["forgetting"] == pytest.approx(0.2)
    assert rows[("representational", "depth", "B")]["at_off"] == 0.35
    printed = capsys.readouterr().out
    assert ["sequential", "rotation", "A", "acc", "20", "0.9000", "0.6000", "40",
            "+0.3000"] in [line.split() for line in printed.splitlines()]
    assert "never" in printed and f"figure: {out}" in printed
    assert Image.open(out).size[1] > 400  # two task panels
    client = MlflowClient(tracking_uri=uri)
    for run_id, name in ((seq, "sequential"), (par, "parallel")):
        logged = {a.path for a in client.list_artifacts(run_id, "forgetting")}
        assert logged == {"forgetting/f.png", "forgetting/forgetting.json"}
        local = client.download_artifacts(run_id, "forgetting/forgetting.json", str(tmp_path))
        assert {r["run"] for r in json.loads(Path(local).read_text())} == {name}


def test_no_log_leaves_the_runs_alone(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = handmade_run(uri, "sequential")
    assert main(["forgetting", run, "--uri", uri, "--out", str(tmp_path / "f.png"),
                 "--no-log"]) == 0
    assert MlflowClient(tracking_uri=uri).list_artifacts(run) == []


@pytest.mark.slow
def test_a_real_sequential_run(tiny_overrides: list[str], tmp_path: Path) -> None:
    """depth then gray then translation (thresholds that always pass: one switch per
    validation); the table agrees with the run's own events artifact and histories."""
    overrides = [*tiny_overrides, "schedule.task_schedule=sequential",
                 "tasks.auxiliary_tasks=depth,gray", "schedule.depth_loss_threshold=5",
                 "schedule.gray_loss_threshold=5", "train.max_steps=8"]
    assert main(["train", *overrides]) == 0
    run_dir = config.load(None, overrides).run_dir
    events = json.loads((run_dir / "schedule_events.json").read_text())
    assert [e["active"] for e in events] == [["depth"], ["gray"], ["identity", "translation"]]
    table = tmp_path / "t.json"
    proc = subprocess.run([sys.executable, "-m", "liss", "forgetting", str(run_dir), "--out",
                           str(tmp_path / "f.png"), "--json", str(table)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("liss").experiment_id])
    rows = rows_of(table)
    for task, metric, event in (("depth", "loss", events[1]), ("gray", "loss", events[2])):
        for d in "AB":
            history = {m.step: m.value for m in
                       client.get_metric_history(run.info.run_id, f"val/{d}/{task}_{metric}")}
            row = rows[("tiny", task, d)]
            assert row["off_step"] == event["step"]
            assert row["at_off"] == history[event["step"]]
            assert event["metrics"][f"val/{d}/{task}_loss"] == pytest.approx(row["at_off"])
            assert (row["final_step"], row["final"]) == (8, history[8])
            assert row["forgetting"] == pytest.approx(history[8] - history[event["step"]])
    assert "forgetting/f.png" in {a.path for a in
                                  client.list_artifacts(run.info.run_id, "forgetting")}
    # the README's translation figure, from the same run
    assert showcase.main([str(run_dir), "--out", str(tmp_path / "img"), "-n", "3"]) == 0
    grid = Image.open(tmp_path / "img" / "translations.png")
    assert grid.size[0] > 6 * 128 and grid.size[1] > 3 * 128  # 48 px cells enlarged
