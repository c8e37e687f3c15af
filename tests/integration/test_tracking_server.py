"""Tracking against a real `mlflow server` on 127.0.0.1 (started and stopped by the test):
read-back, a server killed and restarted mid-run, a server that is not there, nesting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from liss import config
from liss.cli import main
from liss.tracking import MlflowTracker

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on loopback over a SQLite store; stopped by its process group id."""

    def __init__(self, root: Path, port: int | None = None):
        self.root, self.port = root, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "server.log", "ab") as logfile:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                 str(self.port), "--workers", "1", "--backend-store-uri",
                 f"sqlite:///{self.root / 'mlflow.db'}", "--artifacts-destination",
                 str(self.root / "artifacts")],
                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        raise TimeoutError(f"mlflow server did not come up on {self.uri}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield srv
    srv.stop()


def the_run(uri: str, name: str):
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"attributes.run_name = '{name}'")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_run_against_a_server_reads_back(server: MlflowServer, tiny_overrides,
                                         capsys) -> None:
    assert main(["train", *tiny_overrides, f"tracking.uri={server.uri}", "run.name=srv",
                 "train.max_steps=4"]) == 0
    client, run = the_run(server.uri, "srv")
    url = f"{server.uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"view it:    {url}\n" in capsys.readouterr().out  # the end of the run says where
    with urllib.request.urlopen(url, timeout=10) as page:
        assert page.status == 200
    assert not (Path(config.load(None, tiny_overrides).run.dir) / "mlflow.db").exists()
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "4"
    assert run.data.tags["schedule"] == "parallel" and run.data.tags["git_commit"]
    assert steps_of(client, run.info.run_id, "val/A/rotation_acc") == [2, 4]
    assert steps_of(client, run.info.run_id, "train/cycle_A") == [2, 4]
    assert "system/memory_rss_gb" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "schedule_events.json", "generators.pt", "images"} <= artifacts
    assert any("grid" in a.path for a in client.list_artifacts(run.info.run_id, "images"))
    path = client.download_artifacts(run.info.run_id, "config.yaml",
                                     str(server.root / "download"))
    assert config.load(path).run.name == "srv"


@pytest.mark.slow
def test_server_killed_and_restarted_mid_run_loses_nothing(tmp_path, tiny_overrides) -> None:
    srv = MlflowServer(tmp_path / "server").start()
    steps = 60
    cmd = [sys.executable, "-m", "liss", "train", *tiny_overrides, f"tracking.uri={srv.uri}",
           "run.name=outage", f"train.max_steps={steps}", "train.log_every=1",
           "train.val_every=10", "tracking.flush_timeout=120"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    try:
        for line in proc.stderr:
            if line.startswith("step 5/"):
                srv.stop(signal.SIGKILL)  # the server dies mid-run
                break
        outage_seen = False
        for line in proc.stderr:
            outage_seen |= "unreachable" in line
            if line.startswith("step 25/"):
                break
        assert outage_seen
        srv.start()  # the same store comes back on the same port
        rest = proc.stderr.read()
        assert proc.wait(timeout=600) == 0, rest[-3000:]
        assert "is back after" in rest
        client, run = the_run(srv.uri, "outage")
        assert steps_of(client, run.info.run_id, "train/cycle_A") == list(range(1, steps + 1))
        assert steps_of(client, run.info.run_id, "val/B/cycle_l1") == list(range(10, 61, 10))
        assert run.info.status == "FINISHED"
    finally:
        proc.kill()
        srv.stop()


@pytest.mark.slow
def test_no_server_then_sync(tmp_path, tiny_overrides, capsys) -> None:
    srv = MlflowServer(tmp_path / "server")  # not started: nothing listens on its port
    overrides = [*tiny_overrides, f"tracking.uri={srv.uri}", "run.name=offline",
                 "train.max_steps=4", "tracking.flush_timeout=2"]
    start = time.monotonic()
    assert main(["train", *overrides]) == 0
    took = time.monotonic() - start
    err = capsys.readouterr().err
    run_dir = config.load(None, overrides).run_dir
    assert "did not answer before the run ended" in err and f"liss runs sync {run_dir}" in err
    local, run = the_run(f"sqlite:///{run_dir / 'mlflow.db'}", "offline")
    assert steps_of(local, run.info.run_id, "val/A/rotation_acc") == [2, 4]
    assert run.data.params["train.max_steps"] == "4"

    srv.start()
    try:
        assert main(["runs", "sync", str(run_dir)]) == 0
        client, synced = the_run(srv.uri, "offline")
        assert steps_of(client, synced.info.run_id, "val/A/rotation_acc") == [2, 4]
        assert synced.data.params["train.max_steps"] == "4"
        assert synced.data.tags["schedule"] == "parallel"
        assert "config.yaml" in {a.path for a in client.list_artifacts(synced.info.run_id)}
        assert synced.info.status == "FINISHED"
        capsys.readouterr()
        assert main(["runs", "sync", str(run_dir)]) == 0  # idempotent
        assert "nothing to sync" in capsys.readouterr().out
    finally:
        srv.stop()
    assert took < 120, took


def test_a_dead_server_never_blocks_the_caller(tmp_path, tiny_config) -> None:
    cfg = tiny_config(f"tracking.uri=http://127.0.0.1:{free_port()}", "tracking.flush_timeout=1")
    tracker = MlflowTracker(cfg)
    start = time.monotonic()
    for step in range(2000):
        tracker.log_metrics({"train/x": float(step), "train/y": 1.0}, step)
    assert time.monotonic() - start < 1.0  # enqueueing only
    start = time.monotonic()
    tracker.close()
    assert time.monotonic() - start < 20  # bounded by flush_timeout, then the local store
    local = MlflowClient(tracking_uri=f"sqlite:///{cfg.run_dir / 'mlflow.db'}")
    (run,) = local.search_runs([e.experiment_id for e in local.search_experiments()])
    assert len(local.get_metric_history(run.info.run_id, "train/x")) == 2000


def test_child_run_is_nested_under_its_parent(server: MlflowServer, tiny_overrides) -> None:
    client = MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment_by_name("liss") or client.get_experiment(
        client.create_experiment("liss"))
    parent = client.create_run(experiment.experiment_id, run_name="sweep-parent").info.run_id
    assert main(["train", *tiny_overrides, f"tracking.uri={server.uri}", "run.name=child",
                 "train.max_steps=2", f"tracking.parent_run_id={parent}",
                 "tracking.sweep_id=s1"]) == 0
    _, run = the_run(server.uri, "child")
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["sweep_id"] == "s1"
