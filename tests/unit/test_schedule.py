"""The schedule state machine, table-driven: metric sequences in, phases and events out."""

from __future__ import annotations

import json

import pytest

from liss import config
from liss.schedule import (
    DECODERS,
    ENCODERS,
    IDENTITY,
    TASK_HEADS,
    TRANSLATION,
    TRANSLATION_DS,
    Event,
    Phase,
    Schedule,
    Threshold,
)

TASKS = ("rotation", "jigsaw", "depth", "gray")
THRESHOLDS = {"rotation": Threshold("acc", 0.5), "jigsaw": Threshold("acc", 0.3),
              "depth": Threshold("loss", 0.4), "gray": Threshold("loss", 0.2)}
FINAL = (IDENTITY, TRANSLATION)
PASS = {"rotation": 0.9, "jigsaw": 0.9, "depth": 0.1, "gray": 0.1}
FAIL = {"rotation": 0.1, "jigsaw": 0.1, "depth": 0.9, "gray": 0.9}


def metrics(**per_task: tuple[float, float] | float | str) -> dict[str, float]:
    """metrics(rotation="pass", depth=(0.3, 0.5)) -> validation metric dict, both domains."""
    out = {}
    for task, value in per_task.items():
        metric = THRESHOLDS[task].metric
        if value in ("pass", "fail"):
            value = (PASS if value == "pass" else FAIL)[task]
        a, b = value if isinstance(value, tuple) else (value, value)
        out[f"val/A/{task}_{metric}"], out[f"val/B/{task}_{metric}"] = a, b
    return out


ALL_PASS = metrics(**{t: "pass" for t in TASKS})


def walk(name: str, sequence: list[dict], repr_mode: str = "freeze",
         tasks: tuple[str, ...] = TASKS) -> tuple[list[Phase], list[Event]]:
    s = Schedule(name, tasks, {t: THRESHOLDS[t] for t in tasks}, repr_mode)
    phase, phases, events = s.initial(), [], []
    for step, m in enumerate(sequence, start=1):
        phase, event = s.update(phase, m, step * 10)
        phases.append(phase)
        if event:
            events.append(event)
    return phases, events


# ------------------------------------------------------------------ sequential family

SEQUENTIAL = [  # (metrics sequence, expected active keys after each validation)
    ([metrics(rotation="fail")], [("rotation",)]),
    ([metrics(rotation="pass")], [("jigsaw",)]),
    ([metrics(rotation=0.5)], [("rotation",)]),  # equal to the threshold: not strictly above
    ([metrics(rotation=(0.9, 0.2))], [("rotation",)]),  # one domain passing is not enough
    ([metrics(rotation=(0.2, 0.9))], [("rotation",)]),
    ([metrics(rotation="fail", jigsaw="pass", depth="pass")], [("rotation",)]),  # inactive
    ([ALL_PASS], [("jigsaw",)]),  # at most one switch per validation
    ([ALL_PASS] * 4, [("jigsaw",), ("depth",), ("gray",), FINAL]),
    ([ALL_PASS] * 6, [("jigsaw",), ("depth",), ("gray",), FINAL, FINAL, FINAL]),
    ([metrics(rotation="pass"), metrics(jigsaw=0.3), metrics(jigsaw=0.31)],
     [("jigsaw",), ("jigsaw",), ("depth",)]),
    ([metrics(rotation="pass"), metrics(jigsaw="pass"), metrics(depth=0.4),
      metrics(depth=0.39)], [("jigsaw",), ("depth",), ("depth",), ("gray",)]),
    ([{}], [("rotation",)]),  # missing metrics never pass
]


@pytest.mark.parametrize("name", ["sequential", "liss"])
@pytest.mark.parametrize(("sequence", "expected"), SEQUENTIAL)
def test_sequential_family(name: str, sequence: list[dict], expected: list[tuple]) -> None:
    phases, events = walk(name, sequence)
    assert [p.active for p in phases] == expected
    assert len(events) == len({p.index for p in phases} - {0})


def test_liss_updates_the_reference_at_every_switch_and_distils_after_the_first() -> None:
    phases, events = walk("liss", [ALL_PASS] * 4)
    assert [e.update_reference for e in events] == [True] * 4  # the final switch included
    assert all(p.distillation for p in phases)
    assert not Schedule("liss", TASKS, THRESHOLDS).initial().distillation


def test_sequential_never_distils_or_freezes() -> None:
    phases, events = walk("sequential", [ALL_PASS] * 4)
    assert not any(e.update_reference for e in events)
    assert not any(p.distillation or p.frozen for p in phases)


def test_additional_is_cumulative() -> None:
    phases, events = walk("additional", [ALL_PASS] * 5)
    assert [p.active for p in phases] == [
        ("rotation", "jigsaw"), ("rotation", "jigsaw", "depth"), TASKS, (*TASKS, *FINAL),
        (*TASKS, *FINAL)]
    assert not any(e.update_reference for e in events)


def test_additional_waits_for_the_newest_task_only() -> None:
    phases, _ = walk("additional", [metrics(rotation="pass"),
                                    metrics(rotation="fail", jigsaw="fail"),
                                    metrics(rotation="fail", jigsaw="pass")])
    assert [p.active for p in phases] == [("rotation", "jigsaw"), ("rotation", "jigsaw"),
                                          ("rotation", "jigsaw", "depth")]


def test_additional_with_distillation_takes_references() -> None:
    phases, events = walk("additional", [ALL_PASS] * 2, repr_mode="distillation")
    assert all(e.update_reference for e in events) and all(p.distillation for p in phases)


# ------------------------------------------------------------------ representational


@pytest.mark.parametrize(("repr_mode", "frozen", "distil"), [
    ("freeze", (TASK_HEADS, ENCODERS), False),
    ("flow", (TASK_HEADS,), False),
    ("distillation", (TASK_HEADS,), True),
])
def test_representational(repr_mode: str, frozen: tuple, distil: bool) -> None:
    s = Schedule("representational", TASKS, THRESHOLDS, repr_mode)
    assert s.initial() == Phase(0, TASKS)
    one_failing = {**ALL_PASS, **metrics(gray=(0.1, 0.2))}  # gray B equal: not strictly below
    phases, events = walk("representational", [one_failing, ALL_PASS, ALL_PASS,
                                               metrics(rotation="fail")], repr_mode)
    assert [p.index for p in phases] == [0, 1, 1, 1]  # never leaves the final phase
    assert phases[1] == Phase(1, FINAL, frozen=frozen, distillation=distil)
    (event,) = events
    assert event.update_reference is distil and event.step == 20
    assert set(event.metrics) == {k for k in ALL_PASS}


def test_representational_traduction_starts_with_frozen_decoders() -> None:
    s = Schedule("representational-traduction", TASKS, THRESHOLDS, "flow")
    start = s.initial()
    assert start.active == (*TASKS, *FINAL)
    assert set(start.frozen) == {DECODERS, TRANSLATION_DS}
    phases, _ = walk("representational-traduction", [ALL_PASS], "flow")
    assert phases[0] == Phase(1, FINAL, frozen=(TASK_HEADS,))  # decoders and Ds unfrozen


def test_parallel_never_changes() -> None:
    phases, events = walk("parallel", [ALL_PASS, metrics(rotation="fail"), ALL_PASS])
    assert all(p == Phase(0, (*TASKS, *FINAL)) for p in phases) and not events


def test_translation_only_runs_start_in_the_final_phase() -> None:
    s = Schedule("sequential", (), {})
    assert s.initial().active == FINAL and s.is_final(s.initial())


# ------------------------------------------------------------------ events and config


def test_events_are_json_and_round_trip() -> None:
    _, events = walk("liss", [metrics(rotation=(0.6, 0.7))])
    (e,) = events
    assert e.reason == ("rotation learned: val/A/rotation_acc=0.6 > 0.5 and "
                        "val/B/rotation_acc=0.7 > 0.5")
    assert e.metrics == {"val/A/rotation_acc": 0.6, "val/B/rotation_acc": 0.7}
    assert e.active == ["jigsaw"] and e.phase == 1
    data = json.loads(json.dumps(e.to_dict()))
    assert Event.from_dict(data) == e
    phase = Phase(3, FINAL, frozen=(TASK_HEADS,), distillation=True)
    assert Phase.from_dict(json.loads(json.dumps(phase.to_dict()))) == phase


def test_start_event_describes_phase_zero() -> None:
    e = Schedule("liss", TASKS, THRESHOLDS).start_event()
    assert (e.step, e.phase, e.active) == (0, 0, ["rotation"]) and "liss" in e.reason


def test_schedule_from_config_reads_thresholds() -> None:
    cfg = config.load(None, ["schedule.task_schedule=liss", "schedule.depth_loss_threshold=0.3",
                             "tasks.auxiliary_tasks=depth,rotation"])
    s = Schedule.from_config(cfg)
    assert s.tasks == ("rotation", "depth")
    assert s.thresholds["depth"] == Threshold("loss", 0.3)
    assert s.thresholds["rotation"] == Threshold("acc", 0.2)
