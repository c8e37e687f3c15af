"""Shapes of every network output at 64 and 128 px, and what the blocks promise."""

from __future__ import annotations

import pytest
import torch

from liss import config
from liss.model import LissModel
from liss.nn.blocks import ResnetBlock, init_weights
from liss.nn.discriminator import ROTATION_CLASSES, Discriminator
from liss.nn.generator import ClassifierHead, Encoder
from liss.tasks.jigsaw import N_PERMUTATIONS, jigsaw
from liss.tasks.rotation import N_ROTATIONS
from tests.conftest import ALL_TASKS

NGF = 8


@pytest.fixture(scope="module")
def model() -> LissModel:
    torch.manual_seed(0)
    cfg = config.load(None, [f"model.ngf={NGF}", f"model.ndf={NGF}", "model.D_rotation=true",
                              ALL_TASKS])
    return LissModel(cfg).eval()


@pytest.mark.parametrize("size", [64, 128])
def test_generator_outputs(model: LissModel, size: int) -> None:
    x = torch.rand(2, 3, size, size) * 2 - 1
    g = model.G["A"]
    z = g.encoder(x)
    assert z.shape == (2, 4 * NGF, size // 4, size // 4)
    fake = g(x)
    assert fake.shape == x.shape and fake.abs().max() <= 1  # tanh
    assert g.heads["depth"](z).shape == (2, 1, size, size)
    assert g.heads["gray"](z).shape == (2, 3, size, size)
    assert g.heads["rotation"](z).shape == (2, N_ROTATIONS)
    puzzle, _ = jigsaw(x, torch.arange(2))
    assert g.heads["jigsaw"](g.encoder(puzzle)).shape == (2, N_PERMUTATIONS)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_discriminator_outputs(size: int) -> None:
    d = Discriminator(ndf=NGF, n_layers=3, norm="instance", rotation_head=True)
    x = torch.rand(3, 3, size, size)
    patch = size // 8 - 2  # three stride-2 convs, then two 4x4 stride-1 convs with padding 1
    assert d(x).shape == (3, 1, patch, patch)
    assert d.rotation_logits(x).shape == (3, ROTATION_CLASSES)


def test_paper_sized_patch_map_is_30x30() -> None:
    d = Discriminator(ndf=4, n_layers=3, norm="instance", rotation_head=True)
    assert d(torch.rand(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_discriminator_without_rotation_head_refuses_rotation() -> None:
    d = Discriminator(ndf=4, n_layers=3, norm="instance", rotation_head=False)
    with pytest.raises(RuntimeError, match="without a rotation head"):
        d.rotation_logits(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("size", [32, 64, 222, 256])
def test_classifier_head_accepts_any_size(size: int) -> None:
    head = ClassifierHead(ngf=4, norm="instance", n_classes=7)
    z = Encoder(4, 1, "instance")(torch.rand(2, 3, size, size))
    assert head(z).shape == (2, 7)


def test_classifier_head_runs_with_batch_norm() -> None:
    """The original's last norm was sized 256 for 128 channels and broke batch norm."""
    head = ClassifierHead(ngf=4, norm="batch", n_classes=4)
    assert head(torch.rand(2, 16, 16, 16)).shape == (2, 4)


def test_resnet_block_is_residual() -> None:
    block = ResnetBlock(8, "instance")
    for p in block.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 8, 6, 6)
    assert torch.equal(block(x), x)


def test_init_weights_normal() -> None:
    torch.manual_seed(0)
    net = init_weights(torch.nn.Conv2d(64, 64, 3), "normal", 0.02)
    assert abs(net.weight.std().item() - 0.02) < 0.002 and net.bias.abs().max() == 0


def test_checkpoint_names() -> None:
    cfg = config.load(None, ["model.ngf=4", "model.ndf=4", ALL_TASKS])
    m = LissModel(cfg)
    assert set(m.networks()) == {"G_A", "G_B", "D_A", "D_B", "D_A_gray", "D_B_gray"}
    m.update_reference(1.0)
    assert {"E_A_ref", "E_B_ref"} <= set(m.networks())
