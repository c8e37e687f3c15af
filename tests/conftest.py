"""Shared fixtures: a tiny synthetic dataset and tiny configs (48 px images, 4-wide nets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from liss import config
from liss.data import synthetic

# Small enough that a training step takes ~0.05 s on 2 CPU cores, big enough for every
# network (two stride-2 convs, a 3x3 jigsaw grid, the PatchGAN).
ALL_TASKS = "tasks.auxiliary_tasks=rotation,jigsaw,depth,gray"  # explicit: auto needs data

TINY = [
    "data.load_size=40", "data.crop_size=32", "data.batch_size=2", "data.num_workers=0",
    "data.backend=torch", "model.ngf=4", "model.ndf=4", "train.log_every=2",
    "train.val_every=2", "train.ckpt_every=1000", "train.progress=false",
    "train.precision=fp32",
]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synth"
    synthetic.generate(root, n_train=10, n_test=4, size=48, seed=0)
    return root


CHECK_SIZE = 32


@pytest.fixture(scope="session")
def good_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid dataset of CHECK_SIZE px images for the `liss data check` tests: treat
    it as read-only (copy it to break it)."""
    out = tmp_path_factory.mktemp("check") / "good"
    synthetic.generate(out, n_train=3, n_test=2, size=CHECK_SIZE, seed=1)
    return out


@pytest.fixture(scope="session")
def tiny_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a finished 2-step tiny training (checkpoints, generators.pt), shared
    by the translate/export/eval tests: treat it as read-only."""
    from liss.cli import main

    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", *TINY, f"data.root={synth_root}", f"run.dir={runs}", "run.name=t",
                 "train.max_steps=2", "tracking.uri=none"]) == 0
    return runs / "t"


@pytest.fixture
def tiny_overrides(synth_root: Path, tmp_path: Path) -> list[str]:
    """Overrides for a tiny run whose folder and MLflow store live in tmp_path."""
    return [*TINY, f"data.root={synth_root}", f"run.dir={tmp_path / 'runs'}", "run.name=tiny"]


@pytest.fixture
def tiny_config(tiny_overrides: list[str]):
    def make(*extra: str) -> config.Config:
        return config.load(None, [*tiny_overrides, *extra])

    return make


@pytest.fixture(autouse=True)
def _restore_mlflow_http_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracker turns MLflow's own HTTP retries off for its process; in this test process
    that must not leak into the next test's direct MlflowClient calls."""
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        if name in os.environ:  # monkeypatch restores the value (or its absence) afterwards
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
