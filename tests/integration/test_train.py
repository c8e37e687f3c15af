"""End to end: `liss train` on the synthetic data leaves a complete run folder and an MLflow
run (params, metrics with steps, images, config) that MlflowClient reads back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from liss import checkpoint, config
from liss.cli import main

REPO = Path(__file__).resolve().parents[2]


def run_tiny(overrides: list[str], *extra: str) -> Path:
    assert main(["train", str(REPO / "configs/quickstart.yaml"), *overrides, *extra]) == 0
    cfg = config.load(REPO / "configs/quickstart.yaml", [*overrides, *extra])
    return cfg.run_dir


@pytest.fixture(scope="module")
def finished_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import TINY

    runs = tmp_path_factory.mktemp("runs")
    return run_tiny([*TINY, f"data.root={synth_root}", f"run.dir={runs}", "run.name=e2e",
                     "train.max_steps=6", "train.ckpt_every=4", "train.keep_checkpoints=1"])


def mlflow_run(run_dir: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("liss").experiment_id])
    return client, run


def test_run_folder_contents(finished_run: Path) -> None:
    assert (finished_run / "config.yaml").is_file()
    assert json.loads((finished_run / "status.json").read_text())["status"] == "completed"
    ckpts = finished_run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest.pt", "step_6.pt"]  # keep=1
    assert sorted(p.name for p in (finished_run / "grids").iterdir()) == [
        f"step_{s}.png" for s in (2, 4, 6)]
    events = json.loads((finished_run / "schedule_events.json").read_text())
    assert events[0]["step"] == 0 and events[0]["phase"] == 0


def test_checkpoint_layout(finished_run: Path) -> None:
    state = checkpoint.load(finished_run / "checkpoints" / "latest.pt")
    assert state["step"] == 6
    assert {"G_A", "G_B", "D_A", "D_B"} <= set(state["models"])
    assert state["config"]["train"]["max_steps"] == 6
    assert {"G", "D"} == set(state["sides"]) and state["sides"]["G"]["optimizer"]["state"]
    assert {"optimizer", "scaler", "skipped"} == set(state["sides"]["D"])
    assert state["schedule"]["phase"]["index"] == 0
    assert state["tracking"]["run_id"]


def test_resolved_config_can_be_passed_back(finished_run: Path) -> None:
    again = config.load(finished_run / "config.yaml")
    assert again.train.max_steps == 6 and again.run.name == "e2e"
    assert again == config.load(finished_run / "config.yaml")


def test_mlflow_run_reads_back(finished_run: Path, tmp_path: Path) -> None:
    client, run = mlflow_run(finished_run)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.max_steps"] == "6" and params["schedule.task_schedule"] == "liss"
    assert len(params) == len(config.LEAF_TYPES)
    tags = run.data.tags
    assert {k: tags[k] for k in ("schedule", "repr_mode", "tasks", "seed", "world_size",
                                 "device", "precision")} == {
        "schedule": "liss", "repr_mode": "freeze", "tasks": "rotation,jigsaw,depth,gray",
        "seed": "0", "world_size": "1", "device": "cpu", "precision": "fp32"}
    history = client.get_metric_history(run.info.run_id, "val/A/rotation_acc")
    assert [m.step for m in history] == [2, 4, 6]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "schedule/phase")] == [
        2, 4, 6]
    assert client.get_metric_history(run.info.run_id, "train/rotation_A")
    for key in ("perf/img_per_s", "perf/data_wait_frac", "lr/discriminators"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [2, 4, 6]
    assert 0 <= run.data.metrics["perf/data_wait_frac"] <= 1
    assert run.data.metrics["lr/discriminators"] == pytest.approx(2e-4)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "schedule_events.json", "images"} <= artifacts
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    assert any("grid" in p and "step+6" in p and p.endswith(".png") for p in images)
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert config.load(local).run.name == "e2e"
    metrics = run.data.metrics  # paired truth and object masks of the synthetic data
    assert {f"test/{n}_{k}" for n in ("A2B", "B2A") for k in ("changed_l1", "bg_psnr",
                                                               "texture")} <= set(metrics)


def test_quickstart_command_in_a_subprocess(synth_root: Path, tmp_path: Path) -> None:
    """The README's main job, shrunk: the same command line, tiny overrides."""
    from tests.conftest import TINY

    proc = subprocess.run(
        [sys.executable, "-m", "liss", "train", "configs/quickstart.yaml", *TINY,
         f"data.root={synth_root}", f"run.dir={tmp_path}", "train.max_steps=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"run folder: {tmp_path / 'quickstart'}" in proc.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db" in proc.stdout
    assert "rotation accuracy" in proc.stderr  # the end-of-run summary


def test_tracking_none_writes_no_store(tiny_overrides: list[str]) -> None:
    run_dir = run_tiny(tiny_overrides, "train.max_steps=2", "tracking.uri=none")
    assert not (run_dir / "mlflow.db").exists() and not (run_dir.parent / "mlflow.db").exists()
    assert (run_dir / "checkpoints" / "latest.pt").exists()


def test_bf16_training_runs(tiny_overrides: list[str]) -> None:
    run_dir = run_tiny(tiny_overrides, "train.max_steps=2", "train.precision=bf16",
                       "tracking.uri=none")
    state = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    assert all(torch.isfinite(v).all() for v in state["models"]["G_A"].values())


def test_a_file_that_breaks_mid_run_checkpoints_and_stops_clearly(
        tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A file that fails when its turn comes (after the start-up scan): the steps already
    trained are checkpointed and the error is one line naming the file."""
    from liss.data.images import BadImageError
    from liss.data.torch_backend import TrainDataset

    original = TrainDataset.__getitem__

    def flaky(self, ref):
        if ref.position == 6:  # first sample of step 3 with batch 2
            raise BadImageError("/data/trainA/00042.jpg: cannot decode (truncated)")
        return original(self, ref)

    monkeypatch.setattr(TrainDataset, "__getitem__", flaky)
    overrides = [*tiny_overrides, "tracking.uri=none", "train.max_steps=10",
                 "tasks.auxiliary_tasks=rotation"]
    assert main(["train", *overrides]) == 1
    err = capsys.readouterr().err
    assert "liss: data error: /data/trainA/00042.jpg: cannot decode (truncated)" in err
    assert "checkpoint saved at step 3" in err and "Traceback" not in err
    run_dir = config.load(None, overrides).run_dir
    assert checkpoint.load(run_dir / "checkpoints" / "latest.pt")["step"] == 3


def test_extending_a_capped_run_equals_one_longer_run(tiny_overrides: list[str]) -> None:
    """3 steps, then extended to 7, gives the weights of one 7-step run, although the
    capped run validated at step 3 off the val_every=2 grid with a schedule that switches at
    every validation (the final validation reports but does not move the schedule)."""
    switching = [*tiny_overrides, "tracking.uri=none", "schedule.task_schedule=sequential",
                 "tasks.auxiliary_tasks=depth,gray", "schedule.depth_loss_threshold=100",
                 "schedule.gray_loss_threshold=100"]
    straight = run_tiny(switching, "run.name=straight", "train.max_steps=7")
    run_tiny(switching, "run.name=extended", "train.max_steps=3")
    extended = run_tiny(switching, "run.name=extended", "train.max_steps=7")
    a, b = (checkpoint.load(r / "checkpoints" / "latest.pt") for r in (straight, extended))
    assert a["schedule"] == b["schedule"]
    assert [e["step"] for e in a["schedule"]["events"]] == [0, 2, 4]  # it did switch
    for name, weights in a["models"].items():
        for key, value in weights.items():
            assert torch.equal(value, b["models"][name][key]), f"{name}.{key}"
