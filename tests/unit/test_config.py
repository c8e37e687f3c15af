"""Config: loading, overrides, and a clear one-line error (exit 2) for every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from liss import config
from liss.cli import main
from liss.taskspec import auto_tasks

REPO = Path(__file__).resolve().parents[2]

BAD = [  # (overrides, words the one-line error must contain)
    (["optim.lrr=1"], ["optim.lrr", "unknown key", "did you mean optim.lr"]),
    (["lr=0.1"], ["unknown key", "did you mean optim.lr"]),
    (["train.max_step=5"], ["did you mean train.max_steps"]),
    (["data.batch_size=four"], ["data.batch_size", "'four'", "integer"]),
    (["data.no_flip=maybe"], ["data.no_flip", "true or false"]),
    (["loss.lambda_CA=-1"], ["loss.lambda_CA", "-1", ">= 0"]),
    (["loss.lambda_distillation=-0.5"], ["loss.lambda_distillation", ">= 0"]),
    (["schedule.rotation_acc_threshold=1.5"], ["rotation_acc_threshold", "1.5", "<= 1"]),
    (["schedule.jigsaw_acc_threshold=-0.1"], ["jigsaw_acc_threshold", ">= 0"]),
    (["data.crop_size=300"], ["data.crop_size", "300", "<= data.load_size (286)"]),
    (["schedule.task_schedule=lis"], ["task_schedule", "'lis'", "one of", "did you mean liss"]),
    (["tasks.auxiliary_tasks=rotation,colour"], ["auxiliary_tasks", "'colour'", "one of"]),
    (["tasks.auxiliary_tasks=rotation,rotation"], ["auxiliary_tasks", "twice"]),
    (["train.precision=fp8"], ["train.precision", "'fp8'", "fp32, bf16, fp16, auto"]),
    (["train.channels_last=sometimes"], ["train.channels_last", "true, false, auto"]),
    (["schedule.repr_mode=distillation"], ["repr_mode", "parallel", "not meaningful"]),
    (["schedule.task_schedule=sequential", "schedule.repr_mode=distillation"],
     ["repr_mode", "task_schedule=liss"]),
    (["schedule.task_schedule=representational", "tasks.auxiliary_tasks=[]"],
     ["auxiliary_tasks", "at least one"]),
    (["tracking.uri=ftp://host/x"], ["tracking.uri", "unknown scheme 'ftp'"]),
    (["tracking.uri=mlflow.example"], ["tracking.uri", "http(s)://"]),
    (["run.name=a/b"], ["run.name", "folder name"]),
    (["data.val_fraction=0.9"], ["data.val_fraction", "<= 0.5"]),
    (["train.eval_fid=true"], ["train.eval_fid", "train.eval_every > 0"]),
    (["train.best_metric=val/A2B_l1"], ["best_metric", "not computed", "train.eval_every > 0"]),
    (["train.best_metric=val/A/rotaton_acc"], ["best_metric", "val/A/rotation_acc"]),
    (["tasks.auxiliary_tasks=[depth]", "train.best_metric=val/A/jigsaw_acc"],
     ["best_metric", "val/A/depth_loss"]),
    (["train.eval_every=5", "train.best_metric=val/A2B_fid"], ["best_metric", "eval_fid"]),
    (["train"], ["key=value"]),
    (["train=5"], ["is a section"]),
]


@pytest.mark.parametrize(("overrides", "words"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_value_is_a_clear_config_error(overrides: list[str], words: list[str]) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.load(None, overrides)
    for word in words:
        assert word in str(e.value)


def test_cli_reports_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "configs/quickstart.yaml", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("liss: config error: optim.lrr=1: unknown key; did you mean optim.lr?")


def test_missing_data_root_is_a_config_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", f"data.root={tmp_path / 'nowhere'}", f"run.dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "data.root=" in err and "dataset folder not found" in err


def test_missing_and_invalid_config_files(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="file not found"):
        config.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data:\n  root: [unclosed\n")
    with pytest.raises(config.ConfigError, match="not valid YAML line"):
        config.load(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(config.ConfigError, match="YAML mapping"):
        config.load(listing)


def test_unknown_key_in_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  ngff: 8\n")
    with pytest.raises(config.ConfigError, match=r"model\.ngff.*did you mean model\.ngf"):
        config.load(path)


def test_overrides_parse_yaml_values() -> None:
    cfg = config.load(None, ["train.max_steps=50", "optim.lr=1e-4", "data.no_flip=true",
                             "schedule.task_schedule=liss", "run.name=7",
                             "tasks.auxiliary_tasks=[depth, rotation]"])
    assert cfg.train.max_steps == 50 and cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.data.no_flip is True and cfg.run.name == "7"
    assert cfg.tasks.auxiliary_tasks == ["rotation", "depth"]  # priority order


def test_tasks_accept_a_comma_string() -> None:
    cfg = config.load(None, ["tasks.auxiliary_tasks=gray, jigsaw,rotation"])
    assert cfg.tasks.auxiliary_tasks == ["rotation", "jigsaw", "gray"]


def test_defaults_match_the_original() -> None:
    c = config.Config()
    assert (c.loss.lambda_CA, c.loss.lambda_CB, c.loss.lambda_I) == (10.0, 10.0, 0.5)
    assert c.loss.lambda_distillation == 5.0 and c.loss.pool_size == 50
    assert (c.optim.lr, c.optim.beta1, c.optim.n_epochs, c.optim.n_epochs_decay) == (
        2e-4, 0.5, 100, 100)
    assert (c.data.load_size, c.data.crop_size, c.data.batch_size) == (286, 256, 1)
    assert c.schedule.rotation_acc_threshold == 0.2 and c.schedule.depth_loss_threshold == 0.5
    assert c.schedule.encoder_merge_ratio == 1.0 and c.schedule.repr_mode == "freeze"
    assert c.tasks.auxiliary_tasks == ["auto"]  # = the original's four with depth maps
    assert auto_tasks(with_depth=True) == ["rotation", "jigsaw", "depth", "gray"]
    assert c.model.identity == "crossed" and c.model.D_rotation is False


def test_saved_config_loads_back_identically(tmp_path: Path) -> None:
    cfg = config.load(REPO / "configs/quickstart.yaml", ["optim.lr_depth=0.001"])
    config.save(cfg, tmp_path / "config.yaml")
    again = config.load(tmp_path / "config.yaml")
    assert again == cfg


def test_default_yaml_lists_every_key_and_is_current() -> None:
    text = (REPO / "configs/default.yaml").read_text()
    assert text == config.render_defaults(), "regenerate: liss config defaults > " \
                                             "configs/default.yaml"
    data = yaml.safe_load(text)
    flat = {f"{s}.{k}" for s, values in data.items() for k in values}
    assert flat == set(config.LEAF_TYPES)
    assert config.load(REPO / "configs/default.yaml") == config.Config()


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_are_valid(name: str) -> None:
    config.load(REPO / "configs" / name)


def test_cyclegan_baseline_has_cyclegans_own_defaults() -> None:
    cfg = config.load(REPO / "configs" / "cyclegan.yaml")
    assert cfg.tasks.auxiliary_tasks == [] and cfg.model.identity == "same"
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (
        "adam", 2e-4, 0.5, 0.999)


def test_cuda_asked_for_but_absent(tiny_overrides, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", *tiny_overrides, "train.device=cuda"]) == 2
    assert "train.device='cuda': CUDA was asked for but no CUDA device" in capsys.readouterr().err
