"""The end-of-run report: did it learn? First vs last validation, chance levels, phases,
and translation against paired ground truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from liss.paired_names import well_posed
from liss.schedule import Event
from liss.taskspec import TASKS

ROWS = (  # (metric suffix, label, chance level or None)
    *((s.val_metric, s.label, s.chance) for s in TASKS),
    ("cycle_l1", "cycle L1", None),
)


def format_summary(first: Mapping[str, float], last: Mapping[str, float],
                   test: Mapping[str, float], events: Sequence[Event],
                   direction: str = "AtoB") -> str:
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
    lines += _translation_lines(test, direction)
    return "\n".join(lines)


def _translation_lines(test: Mapping[str, float], direction: str) -> list[str]:
    """Test translation against the paired truth, in words: the well-posed numbers where the
    truth has object masks (docs/evaluation.md), else L1 on the pixels the truth changes."""
    lines = []
    for name in ("A2B", "B2A"):
        p = f"test/{name}_"
        if p + "texture" in test:
            key, label = well_posed(name, direction)
            lines.append(f"  {name}  background PSNR {test[p + 'bg_psnr']:.1f} dB (identity "
                         f"{test[p + 'identity_bg_psnr']:.1f}); {label} {test[p + key]:.4f} "
                         f"(identity {test[p + 'identity_' + key]:.4f}): "
                         + _verdict(test[p + key], test[p + "identity_" + key]))
        elif p + "changed_l1" in test:
            lines.append(f"  {name}  L1 on changed pixels {test[p + 'changed_l1']:.4f} "
                         f"(identity {test[p + 'identity_changed_l1']:.4f}): "
                         + _verdict(test[p + "changed_l1"], test[p + "identity_changed_l1"]))
    if lines:
        lines.insert(0, "test translation vs paired truth (lower is better but PSNR):")
    return lines


def _verdict(score: float, identity: float) -> str:
    return "beats the identity" if score < identity else "does not beat the identity yet"
