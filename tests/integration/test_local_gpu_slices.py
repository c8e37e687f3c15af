"""The local launcher sharing a node's GPUs, without a GPU: CUDA_VISIBLE_DEVICES says there
are four, and a stand-in for torchrun records the environment and arguments each point's
process gets, then writes the status.json a trainer would. Through `liss sweep` in-process
(`launch.cli.main`), so the CLI's --gpus-per-point is what is tested."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from launch import local
from launch.cli import main as sweep_main
from tests.unit.test_sweep import QUICKSTART

# Stands in for `python -m torch.distributed.run`: gets torchrun's arguments, records what it
# was given, sleeps as long as its point's seed says, and reports the point completed.
STAND_IN = '''
import json, os, sys, time
args = sys.argv[1:]
values = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
start = time.time()
time.sleep({naps}[int(values["run.seed"])])
run = os.path.join(values["run.dir"], values["run.name"])
os.makedirs(run, exist_ok=True)
record = {{"args": args, "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start,
          "end": time.time()}}
with open(os.path.join(os.environ["RECORDS"], values["run.name"] + ".json"), "w") as f:
    json.dump(record, f)
with open(os.path.join(run, "status.json"), "w") as f:
    json.dump({{"status": "completed", "step": 1}}, f)
'''
NAPS = {0: 0.2, 1: 2.5, 2: 0.2}  # seed 0 ends first and frees its slice for seed 2


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "torchrun_stand_in.py"
    script.write_text(STAND_IN.format(naps=NAPS))
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setattr(local, "TORCHRUN", (str(script),))
    monkeypatch.setenv("RECORDS", str(records))
    return records


def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "gpus.yaml"  # no name: the sweep is called "gpus"
    path.write_text(yaml.safe_dump({
        "base": str(QUICKSTART), "tracking_uri": "none",
        "overrides": {"run.dir": str(tmp_path / "runs")}, "axes": {"run.seed": [0, 1, 2]}}))
    return path


def test_points_take_turns_on_disjoint_gpu_slices(tmp_path: Path, stand_in: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert sweep_main([str(spec_file(tmp_path)), "--launcher", "local",
                       "--gpus-per-point", "2"]) == 0
    out = capsys.readouterr().out
    runs = {p.stem: json.loads(p.read_text()) for p in stand_in.glob("*.json")}
    assert sorted(runs) == ["gpus-s0", "gpus-s1", "gpus-s2"], out
    for run in runs.values():
        assert "--nproc_per_node=2" in run["args"] and "--standalone" in run["args"]
        assert run["gpus"] in ("0,1", "2,3")

    first, second, third = (runs[f"gpus-s{i}"] for i in range(3))
    assert {first["gpus"], second["gpus"]} == {"0,1", "2,3"}, "the first two share no GPU"
    assert first["start"] < second["end"] and second["start"] < first["end"], "side by side"
    freed = min(first, second, key=lambda r: r["end"])
    assert third["gpus"] == freed["gpus"], "the third point gets the slice freed first"
    assert third["start"] >= freed["end"]
    times = sorted(t for r in runs.values() for t in ((r["start"], 1), (r["end"], -1)))
    running = [sum(step for _, step in times[:i + 1]) for i in range(len(times))]
    assert max(running) == 2, "never more points at once than slices"
    assert f"GPUs {third['gpus']}" in out.split("started gpus-s2")[1].splitlines()[0]
    assert "gpus-s2  completed" in out


def test_default_is_one_gpu_per_point_and_max_parallel_caps(
        tmp_path: Path, stand_in: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # slices of what is visible
    assert sweep_main([str(spec_file(tmp_path)), "--launcher", "local"]) == 0
    runs = {p.stem: json.loads(p.read_text()) for p in stand_in.glob("*.json")}
    assert {r["gpus"] for r in runs.values()} == {"3", "5"}
    assert all("--nproc_per_node=1" in r["args"] for r in runs.values())
    for record in stand_in.glob("*.json"):
        record.unlink()
    assert sweep_main([str(spec_file(tmp_path)), "--launcher", "local", "--force",
                       "--max-parallel", "1"]) == 0
    runs = [json.loads(p.read_text()) for p in stand_in.glob("*.json")]
    assert {r["gpus"] for r in runs} == {"3"}, "one point at a time, on the first slice"


def test_without_gpus_points_run_as_before(tmp_path: Path, stand_in: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sweep_main([str(spec_file(tmp_path)), "--launcher", "local",
                       "--set", "resources.nproc_per_node=3"]) == 0
    runs = [json.loads(p.read_text()) for p in stand_in.glob("*.json")]
    assert len(runs) == 3
    assert all(r["gpus"] == "" and "--nproc_per_node=3" in r["args"] for r in runs)
    ends = sorted((r["start"], r["end"]) for r in runs)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ends)), "one at a time"
