"""Float config values must be finite: nan slips through every range check and inf through
every lower bound, so both are one-line config errors, not a traceback or a run that trains."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from liss import config
from liss.cli import main

FLOAT_KEYS = [k for k, hint in config.LEAF_TYPES.items() if hint is float]
NOT_FINITE = ["nan", ".nan", "inf", ".inf", "-.inf", "1e400"]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("raw", NOT_FINITE)
def test_override_is_refused(key: str, raw: str) -> None:
    pattern = rf"^{re.escape(key)}=.*: must be a finite number$"
    with pytest.raises(config.ConfigError, match=pattern):
        config.load(None, [f"{key}={raw}"])


@pytest.mark.parametrize("raw", [".nan", ".inf", ".NaN", "-.Inf"])
def test_yaml_value_is_refused(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"optim:\n  lr: {raw}\n")
    with pytest.raises(config.ConfigError, match=r"^optim\.lr=-?(nan|inf): must be a finite"):
        config.load(path)


def test_checkpoint_config_is_refused() -> None:
    with pytest.raises(config.ConfigError, match=r"loss\.lambda_CA=nan"):
        config.from_dict({"loss": {"lambda_CA": float("nan")}})


def test_finite_values_still_load() -> None:
    cfg = config.load(None, ["optim.lr=1e-4", "loss.lambda_CA=1e300", "tracking.flush_timeout=0"])
    assert (cfg.optim.lr, cfg.loss.lambda_CA, cfg.tracking.flush_timeout) == (1e-4, 1e300, 0.0)


def test_cli_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "optim.lr=nan"]) == 2
    assert capsys.readouterr().err == (
        "liss: config error: optim.lr='nan': must be a finite number\n")
