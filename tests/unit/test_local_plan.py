"""How the local launcher shares this machine: the GPUs it sees and how it slices them among
points (no process is started; the children's environment: integration/test_local_gpu_slices.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launch import local
from launch.sweep import load_spec
from liss.config import ConfigError
from tests.unit.test_sweep import write_spec


@pytest.mark.parametrize(("listed", "gpus"), [
    ("0,1,2,3", ["0", "1", "2", "3"]),
    ("2, 5", ["2", "5"]),
    ("GPU-8f2e,MIG-1a2b", ["GPU-8f2e", "MIG-1a2b"]),
    ("", []),
    ("-1", []),
    ("0,-1,2", ["0"]),  # CUDA ignores everything from an invalid entry on
])
def test_visible_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch,
                                                  listed: str, gpus: list[str]) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert local.visible_gpus() == gpus


def test_visible_gpus_without_the_variable_ask_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert local.visible_gpus() == ["0", "1", "2"]


def plan(tmp_path: Path, gpus: list[str], max_parallel: int | None = None,
         **resources) -> local.Plan:
    return local.plan(load_spec(write_spec(tmp_path, resources=resources)), gpus, max_parallel)


GPUS = [str(i) for i in range(8)]


@pytest.mark.parametrize(("gpus", "max_parallel", "resources", "expected"), [
    (GPUS, None, {}, local.Plan(1, 8, tuple(GPUS))),
    (GPUS, None, {"gpus_per_node": 2}, local.Plan(2, 4, ("0,1", "2,3", "4,5", "6,7"))),
    (GPUS, 3, {"gpus_per_node": 2}, local.Plan(2, 3, ("0,1", "2,3", "4,5"))),
    (GPUS, 9, {"gpus_per_node": 4}, local.Plan(4, 2, ("0,1,2,3", "4,5,6,7"))),
    (GPUS[:5], None, {"gpus_per_node": 2}, local.Plan(2, 2, ("0,1", "2,3"))),  # one left idle
    (GPUS, 2, {"gpus_per_node": 0, "nproc_per_node": 2}, local.Plan(2, 2, ("", ""))),
    ([], None, {"gpus_per_node": 4}, local.Plan(4, 1)),  # no GPUs: CPU points, as before
    ([], 2, {"nproc_per_node": 3}, local.Plan(3, 2)),
])
def test_plan(tmp_path: Path, gpus: list[str], max_parallel: int | None, resources: dict,
              expected: local.Plan) -> None:
    assert plan(tmp_path, gpus, max_parallel, **resources) == expected


def test_more_gpus_per_point_than_visible_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--gpus-per-point.*more than the 2 GPUs visible "
                                          r"here \(0,1\)"):
        plan(tmp_path, ["0", "1"], gpus_per_node=3)
