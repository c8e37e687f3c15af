"""The end-of-run report: did it learn? First vs last validation, chance levels, phases,
and translation against paired ground truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from liss.schedule import Event
from liss.taskspec import TASKS

ROWS = (  # (metric suffix, label, chance level or None)
    *((s.val_metric, s.label, s.chance) for s in TASKS),
    ("cycle_l1", "cycle L1", None),
)


def format_summary(first: Mapping[str, float], last: Mapping[str, float],
                   test: Mapping[str, float], events: Sequence[Event]) -> str:
    lines = ["", "validation, first -> last (A | B):"]
    for suffix, label, chance in ROWS:
        keys = [f"val/{d}/{suffix}" for d in "AB"]
        if not all(k in last for k in keys):
            continue
        cells = " | ".join(f"{first.get(k, float('nan')):.3f} -> {last[k]:.3f}" for k in keys)
        note = f"   (chance {chance:.3f})" if chance else ""
        lines.append(f"  {label:<18} {cells}{note}")
    if len(events) > 1:
        lines.append("phases: " + ", ".join(f"step {e.step}: {'+'.join(e.active)}"
                                            for e in events))
    for direction in ("A2B", "B2A"):
        p = f"test/{direction}_"
        if p + "changed_l1" in test:
            lines.append(f"test {direction} vs ground truth: L1 on changed pixels "
                         f"{test[p + 'changed_l1']:.4f} (identity "
                         f"{test[p + 'identity_changed_l1']:.4f}), whole image "
                         f"{test[p + 'l1']:.4f} (identity {test[p + 'identity_l1']:.4f})")
    return "\n".join(lines)
