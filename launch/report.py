"""`liss sweep report`: read a sweep's runs back from MLflow and write its ablation table
(`launch/ablation.py`) as `report.md`, `report.csv` (one row per group), `runs.csv` (one row
per run) and `forgetting.png` (the groups' task metrics, mean ± std), then log them to the
sweep's parent run.

What is read from each run (through `liss.runs` refs and `liss.eval.forgetting`):

* every final `test/*` metric (translation vs paired truth) and `val/{A2B,B2A}_{fid,kid}`
  (the last in-training FID/KID, where `train.eval_fid` computed them);
* each auxiliary task's metric when the schedule switched it off, at the end, the difference
  (forgetting) and the step of the switch, from `liss.eval.forgetting.forgetting_rows`;
* cost: steps, wall time (the MLflow run's start to end: a preempted run's pauses count),
  the median of the logged `perf/img_per_s` and `perf/data_wait_frac` (one value per
  `train.log_every` window; the median keeps the start-up window from skewing it), and the
  peaks of `system/gpu_memory_gb` and `system/memory_rss_gb`.

Groups are the values of config keys, read from the runs' params (the flattened config each
run logs), so a report of run folders groups exactly like a report of a spec.
"""

from __future__ import annotations

import csv
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from launch import ablation
from launch import curves as curves_lib
from launch.ablation import SEED_KEY, RunResult
from launch.sweep import Point
from liss import config as config_lib
from liss.config import ConfigError
from liss.eval.forgetting import RunHistory, forgetting_rows, load_run, plot_groups
from liss.eval.generators import LoadError
from liss.runs import RunRef
from liss.schedule import metric_key
from liss.store import open_client
from liss.taskspec import spec_of

log = logging.getLogger(__name__)
ARTIFACT_PATH = "report"
MEDIANS = ("perf/img_per_s", "perf/data_wait_frac")
PEAKS = ("system/gpu_memory_gb", "system/memory_rss_gb")
# Points without an MLflow run: name -> (the point's config as params, why there is none).
Missing = Mapping[str, tuple[Mapping[str, str], str]]


def axis_keys(points: Sequence[Point]) -> list[str]:
    """The default grouping of a spec's runs: every key its axes and points vary, except
    run.seed (the seeds are what a group averages over)."""
    keys = dict.fromkeys(k for p in points for k in p.overrides)
    return [k for k in keys if k not in ("run.name", SEED_KEY)
            and len({str(p.overrides.get(k)) for p in points}) > 1]


def point_params(point: Point) -> dict[str, str]:
    """A point's config as its run's params would hold it (flattened, values as strings)."""
    return {k: str(v) for k, v in config_lib.flatten(point.config).items()}


def varying_keys(configs: Sequence[Mapping[str, str]]) -> list[str]:
    """The default grouping of runs without a spec: the config keys whose values differ
    between them, except run.* (name, seed, folder) and tracking.*."""
    keys = dict.fromkeys(k for c in configs for k in c)
    return [k for k in keys if not k.startswith(("run.", "tracking."))
            and len({c.get(k) for c in configs}) > 1]


@dataclass
class RunData:
    """One MLflow run as read back: what it is, what it logged, its task histories."""

    ref: RunRef
    name: str
    status: str
    start_ms: int
    params: dict[str, str]
    parent: str | None
    values: dict[str, float] = field(default_factory=dict)
    history: RunHistory | None = None


def read_run(ref: RunRef) -> RunData:
    from mlflow.exceptions import MlflowException

    client = open_client(ref.uri)
    try:
        run = client.get_run(ref.run_id)
    except MlflowException:
        raise ConfigError("runs", ref.run_id, f"no such run in {ref.uri}") from None
    info, data = run.info, run.data
    values = {k: v for k, v in data.metrics.items()
              if ablation.metric_sections([k]) and k.startswith(("test/", "val/"))}

    def history(key: str) -> list[float]:
        return [m.value for m in client.get_metric_history(ref.run_id, key)]

    steps = [m.step for m in client.get_metric_history(ref.run_id, "schedule/phase")]
    if steps:
        values["steps"] = float(max(steps))
    if info.end_time and info.status != "RUNNING":
        values["time/wall_s"] = (info.end_time - info.start_time) / 1000
    for key in MEDIANS:
        if key in data.metrics:
            values[key] = statistics.median(history(key))
    for key in PEAKS:
        if key in data.metrics:
            values[f"{key}_peak"] = max(history(key))
    tasks = load_run(ref)
    values |= task_values(tasks)
    return RunData(ref, info.run_name or ref.run_id[:8], info.status, info.start_time or 0,
                   dict(data.params), data.tags.get("mlflow.parentRunId"), values, tasks)


def task_values(run: RunHistory) -> dict[str, float]:
    """Each task's metric at its switch and at the end, the forgetting, the switch step."""
    out: dict[str, float] = {}
    for row in forgetting_rows(run):
        key = metric_key(row.domain, row.task, spec_of(row.task).metric)
        out[ablation.end_key(key)] = row.final
        if row.off_step is not None:
            out[ablation.switch_step_key(row.task)] = float(row.off_step)
        if row.at_off is not None:
            out[ablation.switch_key(key)] = row.at_off
        if row.forgetting is not None:
            out[ablation.forgetting_key(key)] = row.forgetting
    return out


def latest_per_name(runs: Sequence[RunData]) -> tuple[list[RunData], list[RunData]]:
    """(the latest run of each name and store, the older ones): `liss sweep --force` starts
    a point again under the same name; only its newest run counts."""
    latest: dict[tuple[str, str], RunData] = {}
    for r in runs:
        key = (r.ref.uri, r.name)
        if key not in latest or r.start_ms > latest[key].start_ms:
            latest[key] = r
    kept = [r for r in runs if latest[(r.ref.uri, r.name)] is r]
    return kept, [r for r in runs if r not in kept]


def results(runs: Sequence[RunData], keys: Sequence[str],
            missing: Missing | None = None) -> list[RunResult]:
    """Table rows of the runs, then of `missing` points (name -> (flattened config as
    strings, why there is no run))."""
    out = [RunResult(r.name, r.ref.run_id, r.status, tuple(r.params.get(k, "?") for k in keys),
                     r.params.get(SEED_KEY, "?"), r.values) for r in runs]
    for name, (params, why) in (missing or {}).items():
        out.append(RunResult(name, "", why, tuple(params.get(k, "?") for k in keys),
                             params.get(SEED_KEY, "?"), {}))
    return out


@dataclass(frozen=True)
class Report:
    markdown: str
    files: list[Path]
    averaged: int  # finished runs in the table (0: nothing to compare)
    logged_to: str | None  # the parent run the files were logged to


def write(title: str, keys: Sequence[str], runs: Sequence[RunData], out: Path, *,
          missing: Missing | None = None,
          parent: tuple[str, str] | None = None, notes: Sequence[str] = (),
          order: Sequence[str] | None = None, curves: Sequence[str] = ()) -> Report:
    """Write the report files into `out` and log them to `parent` (uri, run id), if any.
    Runs (and groups) come in `order` of their names (a spec's points), else as they
    started. `curves`: metric keys whose learning curves (`launch/curves.py`) to add."""
    kept, older = latest_per_name(runs)
    rows = results(sorted(kept, key=lambda r: r.start_ms), keys, missing)
    if order is not None:
        index = {name: i for i, name in enumerate(order)}
        rows.sort(key=lambda r: index.get(r.name, len(index)))
    notes = list(notes)
    if older:
        notes.append(f"Left out: {len(older)} older run(s) of the same names (a point run "
                     f"again with --force): {', '.join(r.ref.run_id for r in older)}.")
    groups = ablation.group_results(rows)
    refs = {r.ref.run_id: r.ref for r in kept}
    finished = [(", ".join(g.values) or "all", [refs[r.run_id] for r in g.finished])
                for g in groups if g.n]
    curve_groups = _curve_groups(finished, curves) if curves else []
    out.mkdir(parents=True, exist_ok=True)
    files = []
    histories = {r.ref.run_id: r.history for r in kept if r.history is not None}
    try:
        figure = plot_groups([(", ".join(g.values) or "all",
                               [histories[r.run_id] for r in g.finished
                                if r.run_id in histories]) for g in groups if g.n],
                             out / "forgetting.png")
        notes.append(f"Figure: {figure.name} (each group's task metrics over steps, "
                     "mean ± sample std).")
    except LoadError as e:
        notes.append(f"No figure: {e}.")
    else:
        files.append(figure)
    if curve_groups:
        files += [curves_lib.plot(curve_groups, curves, out / "curves.png"),
                  curves_lib.write_csv(curve_groups, curves, out / "curves.csv")]
        notes.append(f"Learning curves: curves.png, curves.csv ({', '.join(curves)}; each "
                     "group's mean ± sample std over steps, the identity baseline dotted).")
    notes.append(LEGEND)
    text = ablation.markdown(title, keys, rows, notes)
    (out / "report.md").write_text(text)
    _write_csv(out / "report.csv", ablation.group_rows(keys, rows))
    _write_csv(out / "runs.csv", ablation.run_rows(keys, rows))
    files = [out / "report.md", out / "report.csv", out / "runs.csv", *files]
    logged = _log(parent, files) if parent else None
    return Report(text, files, sum(g.n for g in groups), logged)


LEGEND = ("Metrics: `test/*` translation vs paired ground truth at the end of training "
          "(`identity_*`: the untranslated input, the baseline); `val/*_fid|kid`: the last "
          "in-training FID/KID; `<task metric>@switch`: when the schedule switched the task "
          "off, `@end`: at the end, `forgetting/*`: how much worse it got (positive: "
          "forgotten), `switch_step/*`: when; `time/wall_s`: the MLflow run's start to end; "
          "`perf/*`: median of the logged windows; `*_peak`: the highest logged value.")


def _curve_groups(groups: Sequence[tuple[str, Sequence[RunRef]]], keys: Sequence[str]
                  ) -> curves_lib.Groups:
    """Each group's runs' histories of `keys`, read before any file is written (a key no run
    logged is a ConfigError)."""
    histories = iter(curves_lib.read_histories([r for _, refs in groups for r in refs], keys))
    return [(label, [next(histories) for _ in refs]) for label, refs in groups]


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def _log(parent: tuple[str, str], files: Sequence[Path]) -> str | None:
    """The files as artifacts `report/` of the sweep's parent run; a failure only warns."""
    uri, run_id = parent
    try:
        client = open_client(uri)
        for path in files:
            client.log_artifact(run_id, str(path), ARTIFACT_PATH)
    except Exception as e:
        log.warning("cannot log the report to the parent run %s (%s)", run_id, e)
        return None
    return run_id


def shared_parent(runs: Sequence[RunData]) -> tuple[str, str] | None:
    """The parent run of runs given by folder or id: the one they all name, if they do."""
    parents = {(r.ref.uri, r.parent) for r in runs}
    if len(parents) != 1:
        return None
    uri, parent = parents.pop()
    return (uri, parent) if parent else None
