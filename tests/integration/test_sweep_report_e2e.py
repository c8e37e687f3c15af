"""`liss sweep report` for real: a 2 schedules x 2 seeds sweep of tiny trainings run by the
local launcher with --report, then `liss sweep report SPEC --group-by schedule --curves ...`;
the table's and the learning curves' numbers against mean and sample std computed here from
the runs' own MLflow records, the group count and n, and the files logged to the sweep's
parent run; a --curves key no run logged exits 2 and writes nothing."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
from mlflow import MlflowClient
from PIL import Image

from launch.sweep import load_spec, sweep_dir, sweep_id, tracking_uri
from tests.integration.test_launch_local import sweep, tiny_spec

pytestmark = pytest.mark.slow
FILES = {"report.md", "report.csv", "runs.csv", "forgetting.png"}
CURVE = "val/A2B_bg_psnr"  # logged at every in-training evaluation (train.eval_every=2)


def expected_values(client: MlflowClient, run) -> dict[str, float]:
    """What the report should read from one run, computed from its records directly."""
    rid, metrics = run.info.run_id, run.data.metrics

    def history(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(rid, key))

    out = {k: v for k, v in metrics.items() if k.startswith("test/")}
    for key in ("perf/img_per_s", "perf/data_wait_frac"):
        out[key] = statistics.median(v for _, v in history(key))
    for key in ("system/memory_rss_gb", "system/gpu_memory_gb"):  # GPU: on a GPU only
        if key in metrics:
            out[f"{key}_peak"] = max(v for _, v in history(key))
    out["time/wall_s"] = (run.info.end_time - run.info.start_time) / 1000
    out["steps"] = float(history("schedule/phase")[-1][0])
    # the phase a validation ends in, from phase 0: sequential turns depth off, then gray
    phase = [(0, 0.0), *history("schedule/phase")]
    switches = [step for (step, v), (_, before) in zip(phase[1:], phase, strict=False)
                if v > before]
    for task in ("depth", "gray"):
        for d in "AB":
            key = f"val/{d}/{task}_loss"
            out[f"{key}@end"] = history(key)[-1][1]
            if switches:
                off = switches[("depth", "gray").index(task)]
                at_switch = dict(history(key))[off]
                out[f"switch_step/{task}"] = float(off)
                out[f"{key}@switch"] = at_switch
                out[f"forgetting/{d}/{task}_loss"] = history(key)[-1][1] - at_switch
    return out


def test_report_of_a_two_by_two_sweep(tmp_path: Path, synth_root: Path) -> None:
    spec_path = tiny_spec(tmp_path, synth_root, name="abl", overrides={
        "tasks.auxiliary_tasks": "depth,gray",  # thresholds every run passes: sequential
        "schedule.depth_loss_threshold": 100.0,  # switches at step 2 and at step 4
        "schedule.gray_loss_threshold": 100.0, "train.eval_every": 2},
        axes={"schedule.task_schedule": ["parallel", "sequential"], "run.seed": [0, 1]})
    spec = load_spec(spec_path)
    done = sweep(str(spec_path), "--launcher", "local", "--max-parallel", "2", "--report")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# Sweep report: abl" in done.stdout
    assert "by `schedule.task_schedule`" in done.stdout, "the default: the axes but run.seed"
    assert {p.name for p in (sweep_dir(spec) / "report").iterdir()} == FILES

    typo = sweep("report", str(spec_path), "--curves", "val/A2B_bg_psnr,val/A2B_bgpsnr",
                 "--out", str(tmp_path / "typo"))
    assert typo.returncode == 2 and not (tmp_path / "typo").exists()
    assert "--curves='val/A2B_bgpsnr': no run of the report logged it" in typo.stderr
    assert "val/A2B_bg_psnr" in typo.stderr.rsplit("validation metrics:", 1)[1]

    out = tmp_path / "out"
    again = sweep("report", str(spec_path), "--group-by", "schedule", "--out", str(out),
                  "--curves", CURVE)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith((out / "report.md").read_text())

    client = MlflowClient(tracking_uri(spec))
    runs = client.search_runs([client.get_experiment_by_name("liss").experiment_id],
                              f"tags.sweep_id = '{sweep_id(spec)}'")
    parent = next(r for r in runs if r.data.tags.get("sweep_role") == "parent")
    children = [r for r in runs if r is not parent]
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    by_group: dict[str, list] = {}
    for r in children:
        by_group.setdefault(r.data.params["schedule.task_schedule"], []).append(r)

    with (out / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["schedule.task_schedule"] for r in rows] == ["parallel", "sequential"]
    for row in rows:
        assert (row["runs"], row["seeds"], row["left_out"]) == ("2", "0 1", "0")
        values = [expected_values(client, r) for r in by_group[row["schedule.task_schedule"]]]
        keys = set(values[0]) | set(values[1])
        assert len([k for k in keys if k.startswith("test/")]) == 32  # 2 directions x 16
        for key in keys:
            both = [v[key] for v in values]
            assert float(row[f"{key}:mean"]) == pytest.approx(statistics.fmean(both)), key
            assert float(row[f"{key}:std"]) == pytest.approx(statistics.stdev(both),
                                                             abs=1e-12), key
            assert row[f"{key}:n"] == "2", key
        reported = {c.rsplit(":", 1)[0] for c, v in row.items()
                    if c.endswith(":n") and v != "0"}
        assert reported == keys, "the report reads exactly these metrics of these runs"
    par, seq = rows
    assert par["switch_step/depth:n"] == "0", "parallel never switches a task off"
    assert float(seq["switch_step/depth:mean"]) == 2.0
    assert float(seq["switch_step/gray:mean"]) == 4.0

    text = (out / "report.md").read_text()
    assert "4 runs, 4 finished and averaged, in 2 groups" in text
    assert "| runs averaged (seeds) | 2 (0, 1) | 2 (0, 1) |" in text
    psnr = [[r.data.metrics["test/A2B_psnr"] for r in by_group[g]]
            for g in ("parallel", "sequential")]
    cells = [f"{statistics.fmean(v):.4g} ± {statistics.stdev(v):.2g}" for v in psnr]
    assert f"| test/A2B_psnr | {cells[0]} | {cells[1]} |" in text
    with (out / "runs.csv").open() as f:
        per_run = list(csv.DictReader(f))
    assert sorted(r["run"] for r in per_run) == sorted(r.info.run_name for r in children)
    assert {r["status"] for r in per_run} == {"FINISHED"}
    for figure in ("forgetting.png", "curves.png"):
        with Image.open(out / figure) as im:
            assert im.format == "PNG" and im.width > 500

    with (out / "curves.csv").open() as f:
        curves = list(csv.DictReader(f))
    for group in ("parallel", "sequential"):
        histories = [{m.step: m.value for m in client.get_metric_history(r.info.run_id, CURVE)}
                     for r in by_group[group]]
        rows_of = [r for r in curves if r["group"] == group]
        assert [int(r["step"]) for r in rows_of] == [2, 4] == sorted(histories[0])
        for r in rows_of:
            both = [h[int(r["step"])] for h in histories]
            assert float(r["mean"]) == pytest.approx(statistics.fmean(both), rel=1e-5)
            assert float(r["std"]) == pytest.approx(statistics.stdev(both), rel=1e-5, abs=1e-9)
            assert (r["metric"], r["n"]) == (CURVE, "2")

    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == {f"report/{name}" for name in FILES | {"curves.png", "curves.csv"}}
    assert f"logged to the parent run {parent.info.run_id}" in again.stdout
