"""The crop sizes the config accepts are exactly those the networks run on."""

from __future__ import annotations

import pytest
import torch

from liss import config
from liss.config import ConfigError
from liss.nn.discriminator import Discriminator
from liss.nn.sizes import STRIDE, min_discriminator_input


def runs(side: int, n_layers: int, norm: str, rotation: bool) -> bool:
    d = Discriminator(4, n_layers, norm, rotation_head=rotation).train()
    try:
        d(torch.randn(2, 3, side, side), rotation=rotation)
    except (ValueError, RuntimeError):
        return False
    return True


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
@pytest.mark.parametrize(("norm", "rotation"), [("instance", False), ("instance", True),
                                                ("none", False)])
def test_the_smallest_discriminator_input_is_exact(n_layers: int, norm: str,
                                                   rotation: bool) -> None:
    smallest = min_discriminator_input(n_layers, instance_norm=norm == "instance",
                                       rotation_head=rotation)
    assert runs(smallest, n_layers, norm, rotation)
    if smallest > STRIDE:
        assert not runs(smallest - STRIDE, n_layers, norm, rotation)


def test_crop_sizes_the_networks_cannot_take_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"data.crop_size=20: must be >= 24 for a "
                                          r"discriminator of model.n_layers_D=3"):
        config.load(None, ["data.crop_size=20", "data.load_size=32"])
    with pytest.raises(ConfigError, match=r"data.crop_size=34: must be a multiple of 4"):
        config.load(None, ["data.crop_size=34", "data.load_size=40"])
    with pytest.raises(ConfigError, match=r"must be >= 32 .* model.n_layers_D=3"):
        config.load(None, ["data.crop_size=24", "data.load_size=32", "model.D_rotation=true"])
    config.load(None, ["data.crop_size=24", "data.load_size=32"])
