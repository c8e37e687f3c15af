"""Task schedules as a pure state machine: `(phase, validation metrics) -> (phase, event)`.

No tensors and no I/O: the trainer asks the current `Phase` what to compute and applies an
`Event`'s consequences (freezing, reference-encoder updates). Spec §6–§7.

Keys of `Phase.active`: task names (priority order), then "identity" and "translation".
Frozen module groups: "encoders", "task_heads", "decoders", "translation_discriminators".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from liss.config import Config
from liss.taskspec import specs_of

IDENTITY, TRANSLATION = "identity", "translation"
ENCODERS, TASK_HEADS, DECODERS, TRANSLATION_DS = (
    "encoders", "task_heads", "decoders", "translation_discriminators")


@dataclass(frozen=True)
class Phase:
    """What the model computes and trains until the next switch."""

    index: int
    active: tuple[str, ...]
    frozen: tuple[str, ...] = ()
    distillation: bool = False  # L1 to the reference encoders (once they exist)

    def __contains__(self, key: str) -> bool:
        return key in self.active

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": list(self.active), "frozen": list(self.frozen)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Phase:
        return cls(index=int(data["index"]), active=tuple(data["active"]),
                   frozen=tuple(data.get("frozen", ())),
                   distillation=bool(data.get("distillation", False)))


@dataclass(frozen=True)
class Event:
    """A phase change (or the start), with the metrics that triggered it."""

    step: int
    phase: int
    active: list[str]
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    frozen: list[str] = field(default_factory=list)
    update_reference: bool = False  # snapshot/merge the reference encoders now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        return cls(**data)


@dataclass(frozen=True)
class Threshold:
    metric: str  # "acc" (pass when strictly above) or "loss" (strictly below)
    value: float

    def passes(self, x: float) -> bool:
        return x > self.value if self.metric == "acc" else x < self.value

    @property
    def symbol(self) -> str:
        return ">" if self.metric == "acc" else "<"


def metric_key(domain: str, task: str, metric: str) -> str:
    """The validation metric name a threshold reads, e.g. `val/A/rotation_acc`."""
    return f"val/{domain}/{task}_{metric}"


class Schedule:
    """One of the six task schedules, for a given task list, thresholds and repr_mode."""

    def __init__(self, name: str, tasks: Sequence[str], thresholds: Mapping[str, Threshold],
                 repr_mode: str = "freeze"):
        self.name, self.tasks, self.repr_mode = name, tuple(tasks), repr_mode
        self.thresholds = dict(thresholds)
        missing = [t for t in self.tasks if t not in self.thresholds]
        if missing:
            raise ValueError(f"no threshold for task(s) {missing}")

    @classmethod
    def from_config(cls, cfg: Config) -> Schedule:
        s = cfg.schedule
        thresholds = {t.name: Threshold(t.metric, getattr(s, t.threshold_key))
                      for t in specs_of(cfg.tasks.auxiliary_tasks)}
        return cls(s.task_schedule, cfg.tasks.auxiliary_tasks, thresholds, s.repr_mode)

    # ------------------------------------------------------------------ phases

    @property
    def _sequential_family(self) -> bool:
        return self.name in ("sequential", "liss", "additional")

    @property
    def _representational(self) -> bool:
        return self.name.startswith("representational")

    @property
    def _distils_at_switches(self) -> bool:
        return self.name == "liss" or (self.name == "additional"
                                       and self.repr_mode == "distillation")

    def _chain_phase(self, k: int) -> tuple[str, ...]:
        """Active keys of phase k for the sequential family."""
        final = (*self.tasks, IDENTITY, TRANSLATION) if self.name == "additional" \
            else (IDENTITY, TRANSLATION)
        if k >= len(self.tasks):
            return final
        return self.tasks[:k + 1] if self.name == "additional" else (self.tasks[k],)

    def initial(self) -> Phase:
        if self.name == "parallel":
            return Phase(0, (*self.tasks, IDENTITY, TRANSLATION))
        if self._sequential_family:
            return Phase(0, self._chain_phase(0))
        if self.name == "representational":
            return Phase(0, self.tasks)
        if self.name == "representational-traduction":
            return Phase(0, (*self.tasks, IDENTITY, TRANSLATION), frozen=(DECODERS, TRANSLATION_DS))
        raise ValueError(f"unknown task schedule {self.name!r}")

    def start_event(self) -> Event:
        p = self.initial()
        return Event(step=0, phase=0, active=list(p.active), reason=f"start ({self.name})",
                     frozen=list(p.frozen))

    def is_final(self, phase: Phase) -> bool:
        if self.name == "parallel":
            return True
        if self._sequential_family:
            return phase.index >= len(self.tasks)
        return phase.index >= 1

    # ------------------------------------------------------------------ transitions

    def _check(self, task: str, metrics: Mapping[str, float]) -> tuple[bool, str, dict]:
        thr = self.thresholds[task]
        seen, parts, ok = {}, [], True
        for d in ("A", "B"):
            key = metric_key(d, task, thr.metric)
            if key not in metrics:
                return False, f"{key} missing", seen
            seen[key] = float(metrics[key])
            ok &= thr.passes(seen[key])
            parts.append(f"{key}={seen[key]:.4g} {thr.symbol} {thr.value:g}")
        return ok, " and ".join(parts), seen

    def update(self, phase: Phase, metrics: Mapping[str, float], step: int
               ) -> tuple[Phase, Event | None]:
        """Apply one validation's metrics. At most one switch per call."""
        if self.is_final(phase):
            return phase, None
        if self._sequential_family:
            task = self.tasks[phase.index]  # the task being learned (newest, for additional)
            ok, why, seen = self._check(task, metrics)
            if not ok:
                return phase, None
            nxt = Phase(phase.index + 1, self._chain_phase(phase.index + 1),
                        distillation=self._distils_at_switches)
            return nxt, self._event(step, nxt, f"{task} learned: {why}", seen,
                                    update_reference=self._distils_at_switches)
        # representational: every task must pass at once
        seen, whys = {}, []
        for task in self.tasks:
            ok, why, task_seen = self._check(task, metrics)
            if not ok:
                return phase, None
            seen.update(task_seen)
            whys.append(why)
        frozen = (TASK_HEADS, ENCODERS) if self.repr_mode == "freeze" else (TASK_HEADS,)
        distil = self.repr_mode == "distillation"
        nxt = Phase(1, (IDENTITY, TRANSLATION), frozen=frozen, distillation=distil)
        return nxt, self._event(step, nxt, f"all tasks learned ({self.repr_mode}): "
                                + "; ".join(whys), seen, update_reference=distil)

    @staticmethod
    def _event(step: int, phase: Phase, reason: str, metrics: dict, update_reference: bool
               ) -> Event:
        return Event(step=step, phase=phase.index, active=list(phase.active), reason=reason,
                     metrics=metrics, frozen=list(phase.frozen),
                     update_reference=update_reference)
