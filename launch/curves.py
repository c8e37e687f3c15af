"""Learning curves of a report's groups (`liss sweep report --curves KEY,KEY`): each metric
over steps, one panel per metric, each group's mean over its finished runs (seeds) as a
line and ± one sample std as a band; where the runs also logged the identity baseline of
a paired-truth metric (`val/A2B_texture` -> `val/A2B_identity_texture`), its mean over
every run as a dotted black line, the level a translation has to beat (named in words
instead where it lies far off the curves' range).

Written as `curves.png` and `curves.csv` (group, metric, step, mean, std, n).
"""

from __future__ import annotations

import csv
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from liss.config import ConfigError
from liss.eval import plotting
from liss.eval.forgetting import mean_band
from liss.runs import RunRef
from liss.store import open_client

History = list[tuple[int, float]]  # (step, value) by step
# (group label, one {metric key: history} per finished run of the group)
Groups = Sequence[tuple[str, Sequence[Mapping[str, History]]]]


_PAIRED = re.compile(r"^(\w+)/([AB]2[AB])_(?!identity_)(\w+)$")


def identity_key(key: str) -> str | None:
    """`val/A2B_texture` -> `val/A2B_identity_texture` (the untranslated input's score);
    None for a metric without one."""
    m = _PAIRED.match(key)
    return f"{m[1]}/{m[2]}_identity_{m[3]}" if m else None


def read_histories(refs: Sequence[RunRef], keys: Sequence[str]) -> list[dict[str, History]]:
    """Each run's history of `keys` and of their identity baselines, where logged. A key no
    run logged is a ConfigError naming the step-logged metrics the runs do have."""
    out, logged = [], set()
    for ref in refs:
        client = open_client(ref.uri)
        present = set(client.get_run(ref.run_id).data.metrics)
        logged |= present
        wanted = [k for key in keys for k in (key, identity_key(key)) if k in present]
        out.append({k: sorted((m.step, m.value) for m in client.get_metric_history(
            ref.run_id, k)) for k in dict.fromkeys(wanted)})
    unknown = [k for k in keys if k not in logged]
    if unknown:
        have = sorted(k for k in logged if k.startswith("val/"))
        raise ConfigError("--curves", ",".join(unknown), "no run of the report logged it; "
                          f"their validation metrics: {', '.join(have) or 'none'}")
    return out


def plot(groups: Groups, keys: Sequence[str], out: Path) -> Path:
    plt = plotting.pyplot("learning-curve")
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 1.0 + 2.3 * len(keys)), sharex=True,
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes[:, 0], keys, strict=True):
        span: list[float] = []  # the bands' extent
        for i, (label, runs) in enumerate(groups):
            band = mean_band([r[key] for r in runs if r.get(key)])
            if not band:
                continue
            steps, means, stds = zip(*band, strict=True)
            color = colors[i % len(colors)]
            low = [m - s for m, s in zip(means, stds, strict=True)]
            high = [m + s for m, s in zip(means, stds, strict=True)]
            ax.plot(steps, means, color=color, lw=1.4, marker=".", ms=3,
                    label=f"{label} (n={len(runs)})")
            ax.fill_between(steps, low, high, color=color, alpha=0.15, lw=0)
            span += [min(low), max(high)]
        base = identity_key(key)
        baseline = mean_band([r[base] for _, runs in groups for r in runs if r.get(base)])
        if baseline and span:
            _identity(ax, baseline, min(span), max(span))
        ax.set_ylabel(key, fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="best", ncol=2 if len(groups) > 2 else 1)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title("mean ± sample std over each group's runs", fontsize=9)
    return plotting.save(plt, fig, out)


def _identity(ax, baseline: list[tuple[int, float, float]], low: float, high: float) -> None:
    """The identity baseline dotted, or named in words where it lies so far off the groups'
    range (an untouched background: ~49 dB) that drawing it would flatten their curves."""
    level = statistics.fmean(m for _, m, _ in baseline)
    where = off_range(level, low, high)
    if where is None:
        steps, means, _ = zip(*baseline, strict=True)
        ax.plot(steps, means, ":", color="black", lw=1.2, label="identity (input)")
    else:
        ax.text(0.99, 0.97 if where == "above" else 0.03,
                f"identity (input): {level:.4g}, {where}", transform=ax.transAxes, ha="right",
                va="top" if where == "above" else "bottom", fontsize=7)


def off_range(level: float, low: float, high: float) -> str | None:
    """"above"/"below" where `level` lies more than the curves' own extent [low, high] off
    it; None where drawing it keeps the curves readable."""
    margin = max(high - low, 1e-12)
    if level > high + margin:
        return "above"
    return "below" if level < low - margin else None


def write_csv(groups: Groups, keys: Sequence[str], out: Path) -> Path:
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "metric", "step", "mean", "std", "n"])
        for label, runs in groups:
            for key in keys:
                by_step: dict[int, int] = {}
                for r in runs:
                    for step, _ in r.get(key, []):
                        by_step[step] = by_step.get(step, 0) + 1
                for step, mean, std in mean_band([r[key] for r in runs if r.get(key)]):
                    writer.writerow([label, key, step, f"{mean:.6g}", f"{std:.6g}",
                                     by_step[step]])
    return out
