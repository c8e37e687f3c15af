"""The ablation table of a sweep: runs grouped by the config keys the ablation varies, every
metric as mean ± std over the runs (seeds) of a group.

Plain data in, text out; reading the runs from MLflow is `launch/report.py`'s job, so the
arithmetic is tested on constructed runs. Only runs that finished (MLflow status FINISHED)
are averaged; every other run is listed with its status, never averaged or dropped silently.
A metric some runs of a group lack is averaged over those that have it, and says how many.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from liss import config as config_lib
from liss.config import ConfigError

FINISHED = "FINISHED"
# Short names for --group-by: the run tags liss sets, named after the config keys they hold.
SHORT_KEYS = {"schedule": "schedule.task_schedule", "repr_mode": "schedule.repr_mode",
              "tasks": "tasks.auxiliary_tasks", "seed": "run.seed"}
SEED_KEY = "run.seed"
# Translation against paired truth, in this order per direction (the synthetic benchmark's
# well-posed numbers first: docs/evaluation.md); then the identity baseline.
TRANSLATION = ("bg_psnr", "texture", "object_l1", "bg_l1", "changed_l1", "psnr", "ssim", "l1")
COST = ("steps", "time/wall_s", "perf/img_per_s", "perf/data_wait_frac",
        "system/gpu_memory_gb_peak", "system/memory_rss_gb_peak")
_TEST = re.compile(r"^test/([AB]2[AB])_(identity_)?(\w+)$")
_FID = re.compile(r"^val/([AB]2[AB])_(fid|kid)$")
_AT = re.compile(r"^val/([AB])/(\w+)_(acc|loss)(@switch|@end)$")
_FORGOT = re.compile(r"^forgetting/([AB])/(\w+)_(acc|loss)$")
_SWITCH = re.compile(r"^switch_step/(\w+)$")
_TASK_KINDS = ("@switch", "@end", "")  # at the switch, at the end, forgetting
SECTIONS = ("translation vs paired truth (test split, end of training)",
            "FID / KID (validation, last evaluation)",
            "auxiliary tasks: when switched off, at the end, forgetting",
            "cost")


def switch_key(metric: str) -> str:
    """`val/A/rotation_acc` -> its value at the validation that switched the task off."""
    return f"{metric}@switch"


def end_key(metric: str) -> str:
    return f"{metric}@end"


def forgetting_key(metric: str) -> str:
    """`val/A/rotation_acc` -> `forgetting/A/rotation_acc` (positive: forgotten)."""
    return "forgetting/" + metric.removeprefix("val/")


def switch_step_key(task: str) -> str:
    return f"switch_step/{task}"


@dataclass(frozen=True)
class RunResult:
    """One run (or a point that has none) as the table sees it."""

    name: str
    run_id: str  # "" for a point without an MLflow run
    status: str  # MLflow's FINISHED / FAILED / KILLED / RUNNING, or why it has no run
    group: tuple[str, ...]  # its values of the group-by keys, in their order
    seed: str
    values: Mapping[str, float]

    @property
    def finished(self) -> bool:
        return self.status == FINISHED


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # sample std (n - 1); None for a single value
    n: int


def summarize(values: Sequence[float]) -> Stat:
    """Mean and sample standard deviation (n - 1) of at least one value."""
    if not values:
        raise ValueError("summarize: no values")
    std = statistics.stdev(values) if len(values) > 1 else None
    return Stat(statistics.fmean(values), std, len(values))


@dataclass(frozen=True)
class Group:
    values: tuple[str, ...]
    finished: tuple[RunResult, ...]  # what the stats average
    left_out: tuple[RunResult, ...]  # did not finish: listed, not averaged
    stats: Mapping[str, Stat]

    @property
    def n(self) -> int:
        return len(self.finished)

    @property
    def seeds(self) -> list[str]:
        return [r.seed for r in self.finished]


def group_results(results: Sequence[RunResult]) -> list[Group]:
    """Groups in the order their first run comes; each metric over the finished runs that
    logged it."""
    by_group: dict[tuple[str, ...], list[RunResult]] = {}
    for r in results:
        by_group.setdefault(r.group, []).append(r)
    groups = []
    for values, runs in by_group.items():
        done = [r for r in runs if r.finished]
        keys = dict.fromkeys(k for r in done for k in r.values)
        stats = {k: summarize([r.values[k] for r in done if k in r.values]) for k in keys}
        groups.append(Group(values, tuple(done), tuple(r for r in runs if not r.finished),
                            stats))
    return groups


def group_keys(names: Sequence[str]) -> list[str]:
    """`--group-by` names as config keys: a short name (SHORT_KEYS), a config key, or the
    last part of exactly one config key (`max_steps` -> train.max_steps)."""
    by_leaf: dict[str, list[str]] = {}
    for key in config_lib.LEAF_TYPES:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    keys = []
    for name in (n.strip() for n in names):
        if name in SHORT_KEYS:
            keys.append(SHORT_KEYS[name])
        elif name in config_lib.LEAF_TYPES:
            keys.append(name)
        elif len(by_leaf.get(name, ())) == 1:
            keys.append(by_leaf[name][0])
        else:
            why = (f"names several config keys ({', '.join(by_leaf[name])}): write one"
                   if name in by_leaf else "not a config key; short names: "
                   + ", ".join(f"{k} ({v})" for k, v in SHORT_KEYS.items()))
            raise ConfigError("--group-by", name, why)
    return list(dict.fromkeys(keys))


def _section(key: str) -> tuple[int, tuple] | None:
    """(section, order within it) of a metric key; None: not part of the table."""
    if m := _TEST.match(key):
        direction, identity, what = m.groups()
        rank = TRANSLATION.index(what) if what in TRANSLATION else len(TRANSLATION)
        return 0, (bool(identity), direction, rank, what)
    if m := _FID.match(key):
        return 1, m.groups()
    if m := _SWITCH.match(key):
        return 2, (m.group(1), 0)
    if m := _AT.match(key) or _FORGOT.match(key):
        domain, task, *kind = m.groups()
        return 2, (task, 1, domain, _TASK_KINDS.index(kind[1] if len(kind) > 1 else ""))
    if key in COST:
        return 3, (COST.index(key),)
    return None


def metric_sections(keys: Iterable[str]) -> list[tuple[str, list[str]]]:
    """The table's metrics by section, each in reading order; empty sections left out."""
    placed = sorted((s, k) for k in set(keys) if (s := _section(k)) is not None)
    return [(title, [k for s, k in placed if s[0] == i]) for i, title in enumerate(SECTIONS)
            if any(s[0] == i for s, _ in placed)]


def fmt(x: float) -> str:
    return f"{x:.4g}"


def cell(stat: Stat | None, group_n: int) -> str:
    """`mean ± std`; one value: `value (n=1)`; fewer runs than the group's: `(n=k)` added."""
    if stat is None:
        return "-"
    if stat.std is None:
        return f"{fmt(stat.mean)} (n=1)"
    text = f"{fmt(stat.mean)} ± {stat.std:.2g}"
    return text + (f" (n={stat.n})" if stat.n < group_n else "")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown(title: str, keys: Sequence[str], results: Sequence[RunResult],
             notes: Sequence[str] = ()) -> str:
    """The report: one column per group, one row per metric; then the runs left out."""
    groups = group_results(results)
    metrics = metric_sections(k for g in groups for k in g.stats)
    finished = sum(g.n for g in groups)
    by = ", ".join(f"`{k}`" for k in keys) or "nothing (one group)"
    lines = [f"# {title}", "",
             f"{len(results)} runs, {finished} finished and averaged, in {len(groups)} "
             f"group{'' if len(groups) == 1 else 's'} by {by}. Each cell: mean ± sample "
             "std (n - 1) over the group's finished runs; one run: its value and n=1; "
             "(n=k): only k of the group's runs logged it.", ""]
    header = [", ".join(g.values) or "all" for g in groups]
    lines += [_row(["", *header]), _row(["---"] * (len(groups) + 1))]
    lines += [_row([k, *(g.values[i] for g in groups)]) for i, k in enumerate(keys)]
    lines.append(_row(["runs averaged (seeds)", *(
        f"{g.n} ({', '.join(g.seeds)})" if g.n else "0" for g in groups)]))
    if any(g.left_out for g in groups):
        lines.append(_row(["runs left out (not finished)", *(str(len(g.left_out))
                                                             for g in groups)]))
    for title_, section in metrics:
        lines.append(_row([f"**{title_}**", *([""] * len(groups))]))
        lines += [_row([k, *(cell(g.stats.get(k), g.n) for g in groups)]) for k in section]
    left_out = [r for r in results if not r.finished]
    if left_out:
        lines += ["", "Not averaged (these runs did not finish):", "",
                  _row(["run", "group", "status"]), _row(["---"] * 3)]
        lines += [_row([r.name, ", ".join(r.group), r.status]) for r in left_out]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def group_rows(keys: Sequence[str], results: Sequence[RunResult]) -> list[list[str]]:
    """report.csv: one row per group; `<metric>:mean`, `:std` (empty for n=1), `:n`."""
    groups = group_results(results)
    metrics = [k for _, section in metric_sections(k for g in groups for k in g.stats)
               for k in section]
    rows = [[*keys, "runs", "seeds", "left_out",
             *(f"{k}:{part}" for k in metrics for part in ("mean", "std", "n"))]]
    for g in groups:
        cells = []
        for k in metrics:
            s = g.stats.get(k)
            cells += ["", "", "0"] if s is None else [
                repr(s.mean), "" if s.std is None else repr(s.std), str(s.n)]
        rows.append([*g.values, str(g.n), " ".join(g.seeds), str(len(g.left_out)), *cells])
    return rows


def run_rows(keys: Sequence[str], results: Sequence[RunResult]) -> list[list[str]]:
    """runs.csv: one row per run, finished or not, with every value the table reads."""
    metrics = [k for _, section in metric_sections(k for r in results for k in r.values)
               for k in section]
    rows = [["run", "run_id", "status", *keys, "seed", *metrics]]
    for r in results:
        rows.append([r.name, r.run_id, r.status, *r.group, r.seed,
                     *(repr(r.values[k]) if k in r.values else "" for k in metrics)])
    return rows
