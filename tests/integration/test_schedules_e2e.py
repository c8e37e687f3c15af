"""Each schedule trains for real on the synthetic data and walks its phases in order; the
assertions read the MLflow run (event artifact and `schedule/phase` history), not log text.

For sequential and liss, rotation has to be learned for real (validation accuracy > 0.3 in
both domains, which takes 50-150 steps); the depth and gray thresholds pass at every
validation, so each later phase lasts one validation. The other schedules run depth and gray
only, and switch at their first validation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from liss import config
from liss.cli import main

REPO = Path(__file__).resolve().parents[2]
FINAL = ["identity", "translation"]
EASY = ["schedule.depth_loss_threshold=5", "schedule.gray_loss_threshold=5",
        "train.val_every=10", "train.log_every=10", "data.val_fraction=0.2"]
# sequential and liss learn rotation for real; the others walk on thresholds that always pass
LEARN = ["tasks.auxiliary_tasks=rotation,depth,gray", "schedule.rotation_acc_threshold=0.3",
         "train.max_steps=300"]
QUICK = ["tasks.auxiliary_tasks=depth,gray", "train.max_steps=50"]
T = ["depth", "gray"]

WALKS = {  # schedule (and repr_mode) -> active keys of each phase, in order
    ("sequential", "freeze"): [["rotation"], ["depth"], ["gray"], FINAL],
    ("liss", "freeze"): [["rotation"], ["depth"], ["gray"], FINAL],
    ("parallel", "freeze"): [[*T, *FINAL]],
    ("additional", "freeze"): [["depth"], T, [*T, *FINAL]],
    ("additional", "distillation"): [["depth"], T, [*T, *FINAL]],
    ("representational", "freeze"): [T, FINAL],
    ("representational", "flow"): [T, FINAL],
    ("representational", "distillation"): [T, FINAL],
    ("representational-traduction", "distillation"): [[*T, *FINAL], FINAL],
}


def events_of(run_dir: Path) -> tuple[list[dict], list[tuple[int, float]], dict]:
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("liss").experiment_id])
    path = client.download_artifacts(run.info.run_id, "schedule_events.json", str(run_dir))
    history = client.get_metric_history(run.info.run_id, "schedule/phase")
    return json.loads(Path(path).read_text()), [(m.step, m.value) for m in history], run


@pytest.mark.slow
@pytest.mark.parametrize(("schedule", "repr_mode"), list(WALKS))
def test_schedule_walks_its_phases(schedule: str, repr_mode: str,
                                   tiny_overrides: list[str]) -> None:
    learn = schedule in ("sequential", "liss")
    overrides = [*tiny_overrides, *EASY, *(LEARN if learn else QUICK),
                 f"schedule.task_schedule={schedule}", f"schedule.repr_mode={repr_mode}"]
    assert main(["train", *overrides]) == 0
    run_dir = config.load(None, overrides).run_dir
    events, history, run = events_of(run_dir)
    expected = WALKS[(schedule, repr_mode)]

    assert [e["active"] for e in events] == expected
    assert [e["phase"] for e in events] == list(range(len(expected)))
    assert events[0]["step"] == 0
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and all(s % 10 == 0 for s in steps[1:])
    for e in events[1:]:  # the metrics that triggered each switch pass their thresholds
        assert e["metrics"] and "learned" in e["reason"]
        for key, value in e["metrics"].items():
            assert value > 0.3 if key.endswith("acc") else value < 5
    if learn:  # rotation was learned for real, over several validations
        assert events[1]["step"] >= 20
    else:
        assert steps == [10 * i for i in range(len(expected))]

    phases = [value for _, value in history]
    assert phases == sorted(phases) and phases[-1] == len(expected) - 1
    for e in events[1:]:  # the metric history switches at the event's step
        assert dict(history)[e["step"]] == e["phase"]

    if schedule in ("liss", "additional"):  # a reference at every switch iff distilling
        distilling = schedule == "liss" or repr_mode == "distillation"
        assert [e["update_reference"] for e in events[1:]] == [distilling] * (len(events) - 1)
    if schedule == "liss" or repr_mode == "distillation":  # and the loss really trains
        assert {"val/A/distill_l1", "train/distill_A", "train/distill_B"} <= set(
            run.data.metrics)
    else:
        assert not any("distill" in key for key in run.data.metrics)
    if schedule.startswith("representational"):
        frozen = ["task_heads", "encoders"] if repr_mode == "freeze" else ["task_heads"]
        assert events[-1]["frozen"] == frozen
        assert events[-1]["update_reference"] is (repr_mode == "distillation")
