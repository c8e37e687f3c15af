"""`liss.taskspec` is the one registry of auxiliary tasks: its keys exist in the config, its
order is the priority order, and every reader (config, schedule, tasks, reports) follows it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from liss import config
from liss.schedule import Schedule, Threshold
from liss.taskspec import (
    N_PERMUTATIONS,
    N_ROTATIONS,
    TASK_NAMES,
    TASKS,
    auto_tasks,
    spec_of,
    specs_of,
)
from tests.conftest import ALL_TASKS


def test_registry_is_in_priority_order() -> None:
    assert TASK_NAMES == ("rotation", "jigsaw", "depth", "gray")  # spec §3
    assert auto_tasks(with_depth=True) == list(TASK_NAMES)  # the original's default set
    assert auto_tasks(with_depth=False) == ["rotation", "jigsaw", "gray"]
    assert config.Config().tasks.auxiliary_tasks == ["auto"]
    assert config.LEAF_FIELDS["tasks.auxiliary_tasks"].metadata["choices"] == ("auto",
                                                                               *TASK_NAMES)


@pytest.mark.parametrize("spec", TASKS, ids=TASK_NAMES)
def test_every_spec_key_is_a_float_field_of_its_section(spec) -> None:
    for key in (f"loss.{spec.lambda_key}", f"optim.{spec.lr_key}",
                f"schedule.{spec.threshold_key}"):
        assert config.LEAF_TYPES.get(key) is float, f"{key} is not a float config field"


def test_every_per_task_config_field_belongs_to_a_spec() -> None:
    lrs = {k for k in config.LEAF_TYPES if k.startswith("optim.lr_")}
    thresholds = {k for k in config.LEAF_TYPES if k.startswith("schedule.")
                  and k.endswith("_threshold")}
    assert lrs == {f"optim.{s.lr_key}" for s in TASKS}
    assert thresholds == {f"schedule.{s.threshold_key}" for s in TASKS}
    assert len({s.lambda_key for s in TASKS}) == len(TASKS)


def test_accuracy_tasks_are_exactly_the_classifiers_with_a_chance_level() -> None:
    for s in TASKS:
        assert (s.metric == "acc") == bool(s.classes) == (s.chance is not None), s.name
    assert spec_of("rotation").chance == 1 / N_ROTATIONS == 0.25
    assert spec_of("jigsaw").chance == 1 / N_PERMUTATIONS


def test_lookups_sort_by_priority_and_name_unknown_tasks() -> None:
    assert [s.name for s in specs_of(["gray", "rotation", "depth"])] == [
        "rotation", "depth", "gray"]
    with pytest.raises(ValueError, match="unknown auxiliary task 'colour'; known: rotation"):
        specs_of(["rotation", "colour"])


def test_config_and_schedule_stay_torch_free() -> None:
    code = ("import sys, liss.config, liss.taskspec, liss.schedule, liss.train.summary; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_schedule_thresholds_come_from_the_specs() -> None:
    cfg = config.load(None, ["schedule.depth_loss_threshold=0.3",
                             "schedule.rotation_acc_threshold=0.6", ALL_TASKS])
    s = Schedule.from_config(cfg)
    assert s.thresholds["depth"] == Threshold("loss", 0.3)
    assert s.thresholds["rotation"] == Threshold("acc", 0.6)
    assert set(s.thresholds) == set(TASK_NAMES)


def test_task_classes_take_their_facts_from_the_specs() -> None:
    from liss.tasks import TASK_CLASSES, build_tasks

    assert tuple(TASK_CLASSES) == TASK_NAMES
    for task in build_tasks(list(TASK_NAMES)):
        spec = spec_of(task.name)
        assert type(task).spec is spec
        assert (task.metric, task.lambda_key, task.lr_key, task.threshold_key,
                task.has_discriminator) == (spec.metric, spec.lambda_key, spec.lr_key,
                                            spec.threshold_key, spec.has_discriminator)


def test_reports_list_every_task() -> None:
    from liss import runs
    from liss.eval import evaluate, forgetting
    from liss.train import summary

    for s in TASKS:
        assert (s.val_metric, s.label, s.chance) in summary.ROWS
        assert (s.val_metric, s.label) in evaluate.AUX_ROWS
        assert any(keys == (f"val/A/{s.val_metric}", f"val/B/{s.val_metric}")
                   for _, keys in runs.COLUMNS)
        assert forgetting.SHORT[s.name] == s.short
