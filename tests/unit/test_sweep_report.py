"""`liss sweep report` on constructed runs: mean ± sample std per group, one run (n=1), a
metric some runs lack, runs that did not finish, the metric order, the CSVs, --group-by
names and the default grouping, and the refusals of `liss sweep --report`."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from launch import ablation
from launch.ablation import RunResult, Stat, cell, group_keys, group_results, summarize
from launch.cli import main as sweep_main
from launch.report import RunData, axis_keys, latest_per_name, results, varying_keys
from launch.sweep import expand, load_spec
from liss.config import ConfigError
from liss.eval.forgetting import mean_band
from liss.runs import RunRef

PSNR = "test/A2B_psnr"


def run(name: str, group: str, seed: int, status: str = "FINISHED", **values: float
        ) -> RunResult:
    return RunResult(name, f"id-{name}", status, (group,), str(seed),
                     {PSNR if k == "psnr" else k: v for k, v in values.items()})


RESULTS = [
    run("par-s0", "parallel", 0, psnr=12.0, steps=4),
    run("par-s1", "parallel", 1, psnr=13.0, steps=4),
    run("par-s2", "parallel", 2, psnr=17.0),  # logged no steps
    run("par-s3", "parallel", 3, "FAILED", psnr=99.0, steps=1),
    run("seq-s0", "sequential", 0, psnr=11.5, steps=4),
    run("rep-s0", "representational", 0, "RUNNING", psnr=50.0),
]


def test_summarize_is_mean_and_sample_std() -> None:
    s = summarize([12.0, 13.0, 17.0])
    assert s.mean == pytest.approx(14.0) and s.n == 3
    assert s.std == pytest.approx((((12 - 14) ** 2 + 1 + 9) / 2) ** 0.5)  # n - 1
    assert summarize([3.0]) == Stat(3.0, None, 1)
    with pytest.raises(ValueError):
        summarize([])


def test_groups_average_finished_runs_only() -> None:
    par, seq, rep = group_results(RESULTS)
    assert [g.values for g in (par, seq, rep)] == [("parallel",), ("sequential",),
                                                   ("representational",)]
    assert (par.n, par.seeds, [r.name for r in par.left_out]) == (3, ["0", "1", "2"],
                                                                  ["par-s3"])
    assert par.stats[PSNR].mean == pytest.approx(14.0)  # the failed run's 99 is not in it
    assert par.stats["steps"] == Stat(4.0, 0.0, 2)  # two of the three logged it
    assert seq.stats[PSNR] == Stat(11.5, None, 1)
    assert (rep.n, rep.stats) == (0, {})


def test_cells() -> None:
    assert cell(Stat(14.0, 2.6458, 3), 3) == "14 ± 2.6"
    assert cell(Stat(4.0, 0.0, 2), 3) == "4 ± 0 (n=2)"
    assert cell(Stat(11.5, None, 1), 1) == "11.5 (n=1)"
    assert cell(Stat(0.123456, None, 1), 3) == "0.1235 (n=1)"
    assert cell(None, 2) == "-"


def test_markdown_lists_what_it_did_not_average() -> None:
    text = ablation.markdown("Sweep report: t", ["schedule.task_schedule"], RESULTS)
    lines = text.splitlines()
    assert "6 runs, 4 finished and averaged, in 3 groups by `schedule.task_schedule`" in text
    assert "| | parallel | sequential | representational |" in text.replace("|  |", "| |")
    assert "| runs averaged (seeds) | 3 (0, 1, 2) | 1 (0) | 0 |" in lines
    assert "| runs left out (not finished) | 1 | 0 | 1 |" in lines
    assert f"| {PSNR} | 14 ± 2.6 | 11.5 (n=1) | - |" in lines
    assert "| steps | 4 ± 0 (n=2) | 4 (n=1) | - |" in lines
    left = lines[lines.index("Not averaged (these runs did not finish):"):]
    assert "| par-s3 | parallel | FAILED |" in left and "| rep-s0 | representational | " \
        "RUNNING |" in left


def test_csv_rows() -> None:
    head, par, seq, rep = ablation.group_rows(["schedule.task_schedule"], RESULTS)
    assert head[:5] == ["schedule.task_schedule", "runs", "seeds", "left_out",
                        f"{PSNR}:mean"]
    row = dict(zip(head, par, strict=True))
    assert float(row[f"{PSNR}:mean"]) == pytest.approx(14.0)
    assert float(row[f"{PSNR}:std"]) == pytest.approx(statistics.stdev([12, 13, 17]))
    assert (row[f"{PSNR}:n"], row["steps:n"], row["seeds"], row["left_out"]) == (
        "3", "2", "0 1 2", "1")
    row = dict(zip(head, seq, strict=True))
    assert (row[f"{PSNR}:std"], row[f"{PSNR}:n"]) == ("", "1")
    assert dict(zip(head, rep, strict=True))[f"{PSNR}:n"] == "0"
    runs = ablation.run_rows(["schedule.task_schedule"], RESULTS)
    assert runs[0][:5] == ["run", "run_id", "status", "schedule.task_schedule", "seed"]
    failed = dict(zip(runs[0], runs[4], strict=True))
    assert (failed["status"], failed[PSNR]) == ("FAILED", "99.0")
    assert dict(zip(runs[0], runs[3], strict=True))["steps"] == ""


def test_metric_order() -> None:
    keys = ["perf/img_per_s", "test/B2A_psnr", "test/A2B_identity_l1", "test/A2B_psnr",
            "test/A2B_changed_l1", "test/B2A_object_l1", "test/A2B_bg_psnr", "val/A2B_kid",
            "val/A2B_fid", "val/A/rotation_acc",
            "forgetting/A/rotation_acc", "val/B/rotation_acc@switch", "val/A/rotation_acc@end",
            "val/A/rotation_acc@switch", "switch_step/rotation", "val/A/depth_loss@end",
            "steps", "lr/G", "best/step"]
    sections = ablation.metric_sections(keys)
    assert [title.split()[0] for title, _ in sections] == ["translation", "FID", "auxiliary",
                                                          "cost"]
    assert [k for _, ks in sections for k in ks] == [
        "test/A2B_bg_psnr", "test/A2B_changed_l1", "test/A2B_psnr", "test/B2A_object_l1",
        "test/B2A_psnr", "test/A2B_identity_l1", "val/A2B_fid", "val/A2B_kid",
        "val/A/depth_loss@end",
        "switch_step/rotation", "val/A/rotation_acc@switch", "val/A/rotation_acc@end",
        "forgetting/A/rotation_acc", "val/B/rotation_acc@switch",
        "steps", "perf/img_per_s"]  # the plain val/, lr/ and best/ metrics are not in it


def test_group_by_names() -> None:
    assert group_keys(["schedule", "repr_mode"]) == ["schedule.task_schedule",
                                                     "schedule.repr_mode"]
    assert group_keys(["data.crop_size", "max_steps", "seed"]) == [
        "data.crop_size", "train.max_steps", "run.seed"]
    with pytest.raises(ConfigError, match=r"^--group-by='name': names several config keys"):
        group_keys(["name"])
    with pytest.raises(ConfigError, match=r"^--group-by='shedule': not a config key; short "
                       r"names: schedule \(schedule.task_schedule\)"):
        group_keys(["shedule"])


def test_default_grouping() -> None:
    assert axis_keys(expand(load_spec("schedules"))) == ["schedule.task_schedule",
                                                         "schedule.repr_mode"]
    configs = [{"run.name": "a", "run.seed": "0", "tracking.uri": "x", "optim.lr": "0.1",
                "train.max_steps": "5"},
               {"run.name": "b", "run.seed": "1", "tracking.uri": "y", "optim.lr": "0.2",
                "train.max_steps": "5"}]
    assert varying_keys(configs) == ["optim.lr"]


def test_only_the_latest_run_of_a_name_counts() -> None:
    def data(name: str, start: int, uri: str = "sqlite:///a.db") -> RunData:
        return RunData(RunRef(uri, f"{name}-{start}"), name, "FINISHED", start, {}, None)

    runs = [data("p", 5), data("p", 9), data("q", 1), data("p", 7, "sqlite:///b.db")]
    kept, older = latest_per_name(runs)
    assert [r.ref.run_id for r in kept] == ["p-9", "q-1", "p-7"]
    assert [r.ref.run_id for r in older] == ["p-5"]


def test_mean_band_lines_up_steps() -> None:
    band = mean_band([[(2, 0.2), (4, 0.6)], [(2, 0.4), (4, 0.8)], [(2, 0.3)]])
    assert [(s, round(m, 6), round(d, 6)) for s, m, d in band] == [
        (2, 0.3, 0.1), (4, 0.7, round(statistics.stdev([0.6, 0.8]), 6))]
    assert mean_band([[(2, 0.5)]]) == [(2, 0.5, 0.0)]


@pytest.mark.parametrize(("args", "message"), [
    (["--launcher", "slurm", "--report"], "--report with --launcher slurm needs --wait"),
    (["--launcher", "k8s", "--report"], "--report with --launcher k8s needs --wait"),
    (["--launcher", "local", "--report", "--dry-run"], "--report: a dry run runs nothing"),
])
def test_report_refusals(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        sweep_main(["smoke", *args])
    assert exit_.value.code == 2
    assert f"liss sweep: error: {message}" in capsys.readouterr().err


def test_report_of_nothing_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert sweep_main(["report", str(tmp_path / "no-such-run")]) == 2
    assert "not a folder; give --uri" in capsys.readouterr().err


def test_a_point_without_a_run_is_listed() -> None:
    params = {"schedule.task_schedule": "liss", "run.seed": "2"}
    rows = results([], ["schedule.task_schedule"],
                   {"sw-liss-s2": (params, "no MLflow run (launcher: failed)")})
    assert rows == [RunResult("sw-liss-s2", "", "no MLflow run (launcher: failed)",
                              ("liss",), "2", {})]
    text = ablation.markdown("t", ["schedule.task_schedule"], rows)
    assert "| sw-liss-s2 | liss | no MLflow run (launcher: failed) |" in text
    assert "| runs averaged (seeds) | 0 |" in text
