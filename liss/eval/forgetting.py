"""`liss forgetting RUN...` (and `liss runs forgetting`): how much each auxiliary task was
forgotten after the schedule switched it off, from the runs' MLflow histories.

A task's metric (`val/<A|B>/<task>_acc` or `_loss`) is read at the validation where the
schedule switched the task off — the one that triggered the switch — and at the end of
training. Forgetting is how much worse it got: at-switch minus final for accuracies, final
minus at-switch for losses (positive = forgotten). This is the quantity LiSS's claim is
about: a sequential schedule forgets, distillation (`liss`) should forget less.

When each phase began comes from the `schedule/phase` history (`liss.runs.phase_starts`);
what each phase trained comes from walking the run's schedule (its `schedule`, `repr_mode`
and `tasks` tags) through `liss.schedule.Schedule`, so no artifact is needed. The figure
shows every task metric over steps with the phases as bands, several runs overlaid;
`plot_groups` draws groups of runs (a sweep's seeds) as means with ± std bands.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from liss.eval import plotting
from liss.eval.generators import LoadError
from liss.runs import RunRef, phase_starts, resolve_refs
from liss.schedule import IDENTITY, TRANSLATION, Phase, Schedule, Threshold, metric_key
from liss.taskspec import TASKS, spec_of, specs_of

SHORT = {**{s.name: s.short for s in TASKS}, IDENTITY: "idt", TRANSLATION: "transl"}
RIBBON = 0.04  # axes height of one run's phase ribbon when several runs are overlaid


@dataclass(frozen=True)
class PhaseSpan:
    start: int
    end: int
    active: tuple[str, ...]

    @property
    def label(self) -> str:
        return "+".join(SHORT.get(k, k) for k in self.active)


@dataclass
class RunHistory:
    ref: RunRef
    name: str
    schedule: str
    tasks: list[str]
    phases: list[PhaseSpan]
    history: dict[str, list[tuple[int, float]]]  # metric key -> [(step, value)] by step


@dataclass(frozen=True)
class Row:
    run: str
    task: str
    domain: str
    metric: str  # acc | loss
    off_step: int | None  # None: the schedule never switched the task off
    at_off: float | None
    final_step: int
    final: float
    forgetting: float | None  # positive = worse at the end than when switched off


def phase_sequence(schedule: str, tasks: Sequence[str], repr_mode: str) -> list[Phase]:
    """Every phase the schedule goes through, in order (its switches forced)."""
    specs = specs_of(tasks)
    thresholds = {t.name: Threshold(t.metric, 0.5) for t in specs}
    passing = {metric_key(d, t.name, t.metric): 1.0 if t.higher_is_better else 0.0
               for t in specs for d in "AB"}
    s = Schedule(schedule, tasks, thresholds, repr_mode)
    phases = [s.initial()]
    while not s.is_final(phases[-1]):
        phases.append(s.update(phases[-1], passing, 0)[0])
    return phases


def load_run(ref: RunRef) -> RunHistory:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=ref.uri)
    run = client.get_run(ref.run_id)
    tags = run.data.tags
    tasks = [t for t in tags.get("tasks", "").split(",") if t]
    schedule = tags.get("schedule", "parallel")
    history = {}
    for t in tasks:
        for d in "AB":
            key = metric_key(d, t, spec_of(t).metric)
            points = client.get_metric_history(ref.run_id, key)
            history[key] = sorted((m.step, m.value) for m in points)
    last = max((points[-1][0] for points in history.values() if points), default=0)
    starts = phase_starts(client, ref.run_id)
    phases = phase_sequence(schedule, tasks, tags.get("repr_mode", "freeze"))[:len(starts)]
    starts = starts[:len(phases)]
    spans = [PhaseSpan(s, e, p.active)
             for s, e, p in zip(starts, [*starts[1:], last], phases, strict=True)]
    return RunHistory(ref, run.info.run_name or ref.run_id[:8], schedule, tasks, spans,
                      history)


def _value_at(points: list[tuple[int, float]], step: int) -> float | None:
    """The value logged at `step` (or the last one before it)."""
    before = [v for s, v in points if s <= step]
    return before[-1] if before else None


def forgetting_rows(run: RunHistory) -> list[Row]:
    rows = []
    for t in run.tasks:
        spec = spec_of(t)
        off = next((p.start for i, p in enumerate(run.phases)
                    if i and t in run.phases[i - 1].active and t not in p.active), None)
        for d in "AB":
            points = run.history[metric_key(d, t, spec.metric)]
            if not points:
                continue
            final_step, final = points[-1]
            at_off = None if off is None else _value_at(points, off)
            change = None if at_off is None else (
                at_off - final if spec.higher_is_better else final - at_off)
            rows.append(Row(run.name, t, d, spec.metric, off, at_off, final_step, final, change))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    def num(x: float | None, sign: bool = False) -> str:
        return "-" if x is None else f"{x:+.4f}" if sign else f"{x:.4f}"

    table = [["run", "task", "metric", "off at step", "at switch", "final", "final step",
              "forgetting"]]
    for r in rows:
        table.append([r.run, r.task, f"{r.domain} {r.metric}",
                      "never" if r.off_step is None else str(r.off_step), num(r.at_off),
                      num(r.final), str(r.final_step), num(r.forgetting, sign=True)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("(forgetting > 0: the task is worse at the end than when the schedule "
                 "switched it off; accuracy lost, or loss gained)")
    return "\n".join(lines)


# ---------------------------------------------------------------------- the figure


def _bands(ax, runs: Sequence[RunHistory], colors: list[str]) -> None:
    """One run: shaded full-height phase bands, labelled. Several: a thin ribbon per run
    under the curves (in room made for it), in the run's colour."""
    if len(runs) == 1:
        for k, span in enumerate(runs[0].phases):
            ax.axvspan(span.start, span.end, color="0.86" if k % 2 else "0.94", lw=0)
            ax.text(span.start, 1.0, f" {span.label}", transform=ax.get_xaxis_transform(),
                    va="top", fontsize=7, color="0.3")
        return
    lo, hi = ax.get_ylim()
    room = RIBBON * len(runs) + 0.02
    ax.set_ylim(lo - (hi - lo) * room / (1 - room), hi)
    for i, run in enumerate(runs):
        for k, span in enumerate(run.phases):
            ax.axvspan(span.start, span.end, ymin=i * RIBBON, ymax=(i + 1) * RIBBON - 0.005,
                       color=colors[i % len(colors)], alpha=0.3 if k % 2 else 0.6, lw=0)


def _panels(plt, runs: Sequence[RunHistory]):
    """(figure, one axis per task present in `runs`, those tasks' specs, the colours)."""
    tasks = specs_of({t for r in runs for t in r.tasks})
    if not tasks:
        raise LoadError("no auxiliary task in these runs: nothing to plot")
    fig, axes = plt.subplots(len(tasks), 1, figsize=(9, 1.2 + 2.4 * len(tasks)), sharex=True,
                             squeeze=False)
    return fig, axes[:, 0], tasks, plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _rings(ax, run: RunHistory, task: str, color: str) -> None:
    """A ring where the schedule switched `task` off (its metric at that validation)."""
    for row in forgetting_rows(run):
        if row.task == task and row.off_step is not None:
            ax.plot([row.off_step], [row.at_off], "o", color=color, ms=6, mfc="none")


def plot(runs: Sequence[RunHistory], out: Path) -> Path:
    """Task metrics over steps, one panel per task, phases as bands; runs overlaid."""
    plt = plotting.pyplot("forgetting")
    fig, axes, tasks, colors = _panels(plt, runs)
    for ax, spec in zip(axes, tasks, strict=True):
        for i, run in enumerate(runs):
            color = colors[i % len(colors)]
            for d, style in (("A", "-"), ("B", "--")):
                points = run.history.get(metric_key(d, spec.name, spec.metric), [])
                if points:
                    steps, values = zip(*points, strict=True)
                    ax.plot(steps, values, style, color=color, lw=1.4, marker=".", ms=3,
                            label=f"{run.name} {d}" if len(runs) > 1 else f"domain {d}")
            _rings(ax, run, spec.name, color)
        ax.set_ylabel(spec.label)
        _bands(ax, runs, colors)
    axes[0].legend(fontsize=7, loc="best", ncol=2 if len(runs) > 2 else 1)
    axes[-1].set_xlabel("step")
    names = ", ".join(f"{r.name} ({r.schedule})" for r in runs)
    bands = "bands: phases" if len(runs) == 1 else "ribbons at the bottom: each run's phases"
    axes[0].set_title(f"validation task metrics of {names}\nrings: where the schedule "
                      f"switched the task off; {bands}", fontsize=9)
    return plotting.save(plt, fig, out)


def mean_band(histories: Sequence[list[tuple[int, float]]]
              ) -> list[tuple[int, float, float]]:
    """(step, mean, sample std) over the runs that logged each step; std 0 where one did.
    Seeds of one config validate at the same steps, so their values line up by step."""
    by_step: dict[int, list[float]] = {}
    for points in histories:
        for step, value in points:
            by_step.setdefault(step, []).append(value)
    return [(step, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
            for step, v in sorted(by_step.items())]


def plot_groups(groups: Sequence[tuple[str, Sequence[RunHistory]]], out: Path) -> Path:
    """Task metrics over steps, one panel per task: each group's mean over its runs (seeds)
    as a line, ± one sample std as a band, and a ring where each run switched the task off.
    Phases differ from seed to seed, so there are no phase bands here."""
    plt = plotting.pyplot("forgetting")
    fig, axes, tasks, colors = _panels(plt, [r for _, runs in groups for r in runs])
    for ax, spec in zip(axes, tasks, strict=True):
        for i, (label, runs) in enumerate(groups):
            color = colors[i % len(colors)]
            for d, style in (("A", "-"), ("B", "--")):
                key = metric_key(d, spec.name, spec.metric)
                band = mean_band([r.history[key] for r in runs if r.history.get(key)])
                if not band:
                    continue
                steps, means, stds = zip(*band, strict=True)
                ax.plot(steps, means, style, color=color, lw=1.4, marker=".", ms=3,
                        label=f"{label} {d} (n={len(runs)})")
                ax.fill_between(steps, [m - s for m, s in zip(means, stds, strict=True)],
                                [m + s for m, s in zip(means, stds, strict=True)],
                                color=color, alpha=0.15, lw=0)
            for run in runs:
                _rings(ax, run, spec.name, color)
        ax.set_ylabel(spec.label)
    axes[0].legend(fontsize=7, loc="best", ncol=2 if len(groups) > 1 else 1)
    axes[-1].set_xlabel("step")
    axes[0].set_title("validation task metrics, mean ± sample std over each group's runs "
                      "(solid A, dashed B)\nrings: where each run's schedule switched the "
                      "task off", fontsize=9)
    return plotting.save(plt, fig, out)


# ---------------------------------------------------------------------- the verb


def _log(runs: Sequence[RunHistory], figure: Path, rows: Sequence[Row]) -> None:
    """The figure and each run's table, as artifacts `forgetting/` of each run."""
    from mlflow import MlflowClient

    for run in runs:
        client = MlflowClient(tracking_uri=run.ref.uri)
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "forgetting.json"
            table.write_text(json.dumps([asdict(r) for r in rows if r.run == run.name],
                                        indent=1))
            client.log_artifact(run.ref.run_id, str(table), "forgetting")
            client.log_artifact(run.ref.run_id, str(figure), "forgetting")


def run_forgetting(items: Sequence[str], *, uri: str | None, out: Path,
                   json_path: Path | None = None, log: bool = True) -> str:
    """Load the runs, write the figure (and JSON), log both to the runs; the table."""
    runs = [load_run(ref) for ref in resolve_refs(items, None, uri)]
    rows = [row for run in runs for row in forgetting_rows(run)]
    figure = plot(runs, out)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    if log:
        _log(runs, figure, rows)
    return f"{format_table(rows)}\nfigure: {figure}"
