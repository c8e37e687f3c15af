"""Batch-size checks: the config checks the global batch; the per-rank share is checked
once the world size is known (`check_per_rank_batch`, from the input pipeline)."""

from __future__ import annotations

import pytest

from liss import config


def test_config_time_check_names_the_global_batch() -> None:
    with pytest.raises(config.ConfigError, match=r"data\.batch_size >= 2 \(the global batch"):
        config.load(None, ["model.norm=batch", "data.batch_size=1"])


@pytest.mark.parametrize(("norm", "batch", "world"), [
    ("batch", 4, 2), ("batch", 2, 1), ("instance", 2, 2), ("instance", 1, 1)])
def test_per_rank_batch_that_fits(norm: str, batch: int, world: int) -> None:
    cfg = config.load(None, [f"model.norm={norm}", f"data.batch_size={batch}"])
    config.check_per_rank_batch(cfg, world)


@pytest.mark.parametrize(("norm", "batch", "world", "message"), [
    ("instance", 3, 2, "data.batch_size=3: must be divisible by the world size (2)"),
    ("batch", 3, 2, "data.batch_size=3: must be divisible by the world size (2)"),
    ("batch", 2, 2, "model.norm='batch': batch norm needs >= 2 images per rank; "
                    "data.batch_size=2 over 2 ranks gives 1"),
])
def test_per_rank_batch_that_does_not(norm: str, batch: int, world: int, message: str) -> None:
    cfg = config.load(None, [f"model.norm={norm}", f"data.batch_size={batch}"])
    with pytest.raises(config.ConfigError) as e:
        config.check_per_rank_batch(cfg, world)
    assert str(e.value) == message
