"""Configs and sweep specs by name (`liss train quickstart`), `liss config show` (the resolved
config with where each non-default value was set) and `liss config list`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from launch.sweep import load_spec
from liss import config
from liss.cli import main

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
SWEEPS = sorted(p.stem for p in (REPO / "configs" / "sweeps").glob("*.yaml"))


def test_a_shipped_name_loads_that_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here: the names alone
    by_path = config.load(QUICKSTART)
    assert config.load("quickstart") == by_path
    assert config.load("quickstart.yaml") == by_path
    assert config.load("horse2zebra").data.crop_size == 256


def test_an_existing_file_wins_over_a_name(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    Path("quickstart").write_text("run: {name: mine}\n")
    assert config.load("quickstart").run.name == "mine"
    assert config.load("quickstart.yaml").run.name == "quickstart"  # no such file here


@pytest.mark.parametrize("ref", ["quikstart", "nowhere/quickstart.yaml"])
def test_neither_file_nor_name_lists_the_shipped_names(ref: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", ref, "train.max_steps=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"liss: config error: config={ref!r}: file not found, and not the "
                          f"name of a shipped config ({', '.join(CONFIGS)}")


def test_a_sweep_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec("schedules")
    assert spec.source == (REPO / "configs" / "sweeps" / "schedules.yaml").resolve()
    assert spec.base == QUICKSTART.resolve()
    with pytest.raises(config.ConfigError, match=r"sweep spec not found, and not the name of a "
                       rf"shipped sweep spec \({', '.join(SWEEPS)}"):
        load_spec("schedule")


def test_provenance_names_where_each_non_default_value_was_set() -> None:
    cfg, sources = config.provenance("quickstart", [
        "train.max_steps=5",     # the file sets it too: the override wins
        "optim.lr=0.001",        # only the override
        "train.val_every=400",   # back to the default: nothing to explain
        "model.ngf=16",          # what the file says already: the override still set it
    ])
    assert cfg.train.max_steps == 5 and cfg.optim.lr == 0.001
    assert sources["train.max_steps"] == sources["optim.lr"] == "override"
    assert sources["model.ngf"] == "override"
    assert sources["data.crop_size"] == sources["schedule.task_schedule"] == "quickstart"
    assert "train.val_every" not in sources
    assert "run.seed" not in sources  # the file sets seed: 0, the default
    assert "optim.beta1" not in sources
    _, by_path = config.provenance(QUICKSTART)
    assert by_path["data.crop_size"] == str(QUICKSTART)


def test_config_show_is_the_resolved_config_with_comments(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "quickstart", "train.max_steps=5"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out) == config.load("quickstart", ["train.max_steps=5"]).to_dict()
    lines = out.splitlines()
    assert "  max_steps: 5  # from override" in lines
    assert "  crop_size: 64  # from quickstart" in lines
    assert "  lambda_CA: 10.0" in lines  # a default: no comment


def test_config_show_takes_overrides_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "optim.lr=0.001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  lr: 0.001  # from override" in lines
    assert sum("# from" in line for line in lines if line.startswith("  ")) == 1


def test_config_show_reports_a_bad_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "quickstart", "train.precision=fp8"]) == 2
    assert "train.precision='fp8'" in capsys.readouterr().err


def test_config_list_names_the_shipped_configs_and_sweeps(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    assert f"in {REPO / 'configs'}:" in out and f"in {REPO / 'configs' / 'sweeps'}:" in out
    names = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert names == [*CONFIGS, *SWEEPS]
    assert {"cyclegan", "default", "horse2zebra", "quickstart"} <= set(CONFIGS)


def test_train_help_says_how_to_list_keys_and_configs(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "`liss config defaults`" in text and "`liss config list`" in text
    assert f"({', '.join(CONFIGS)})" in text
