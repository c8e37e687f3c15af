"""Mixed precision and memory format: one step's gradients in bf16/fp16 are close to fp32,
channels_last equals contiguous, and how precision is resolved. (In a real Trainer: fp16
overflow skipping a step, channels_last and compiled training:
integration/test_precision_training.py.)"""

from __future__ import annotations

import pytest
import torch

from liss import config
from liss.data.batch import Batch, DomainBatch
from liss.model import LissModel
from liss.precision import Precision, resolve_channels_last, resolve_precision
from liss.schedule import IDENTITY, TRANSLATION, Phase
from tests.conftest import ALL_TASKS

CPU = torch.device("cpu")
EVERYTHING = Phase(0, ("rotation", "jigsaw", "depth", "gray", IDENTITY, TRANSLATION))


def batch(channels_last: bool = False) -> Batch:
    g = torch.Generator().manual_seed(0)

    def domain(seed: int) -> DomainBatch:
        return DomainBatch(torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
                           torch.rand(2, 1, 32, 32, generator=g), torch.tensor([seed, seed + 1]),
                           torch.arange(2))

    return Batch(domain(1), domain(5)).to(CPU, channels_last)


def step_grads(precision: str, channels_last: bool = False) -> tuple[float, torch.Tensor]:
    """Loss and unscaled G gradients of one step; fp16 retries as GradScaler backs off."""
    torch.manual_seed(0)
    model = LissModel(config.load(None, ["model.ngf=8", "model.ndf=8", "model.D_rotation=true",
                                       ALL_TASKS]))
    if channels_last:
        model.use_channels_last()
    prec = Precision(precision, CPU)
    scaler = prec.grad_scaler()
    params = [p for g in model.generator_parameter_groups() for p in g["params"]]
    opt = torch.optim.SGD(params, lr=0.0)
    for _ in range(30):
        opt.zero_grad(set_to_none=True)
        with prec.autocast():
            loss = model.generator_losses(batch(channels_last), EVERYTHING).total
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        grads = torch.cat([p.grad.flatten() for p in params])
        if torch.isfinite(grads).all():
            return loss.item(), grads
        scaler.update()  # overflow: halve the scale and try again, as training would
    raise AssertionError("gradients never became finite")


@pytest.fixture(scope="module")
def fp32() -> tuple[float, torch.Tensor]:
    return step_grads("fp32")


# At initialisation these InstanceNorm networks amplify noise: a 0.1% perturbation of the
# *input* moves the fp32 gradient by ~8% (test below). So the loss is held to a tight bound,
# and the gradient to bounds on its direction (cosine) and relative error that such rounding
# explains; a broken AMP path (wrong dtype, missing unscale) is far outside them.
AMP_BOUNDS = [("bf16", 2e-3, 0.90, 0.5), ("fp16", 2e-4, 0.97, 0.25)]


@pytest.mark.parametrize(("precision", "loss_rel", "min_cos", "grad_rel"), AMP_BOUNDS)
def test_amp_gradients_are_close_to_fp32(fp32, precision: str, loss_rel: float,
                                         min_cos: float, grad_rel: float) -> None:
    loss32, g32 = fp32
    loss, g = step_grads(precision)
    assert torch.isfinite(g).all() and not torch.equal(g, g32)  # autocast really ran
    assert loss == pytest.approx(loss32, rel=loss_rel)
    assert torch.nn.functional.cosine_similarity(g, g32, dim=0).item() > min_cos
    assert ((g - g32).norm() / g32.norm()).item() < grad_rel


def test_fp32_gradient_is_this_sensitive_at_init(fp32) -> None:
    """Why the gradient bounds above are loose: fp32 alone, 0.1% noise on the input."""
    _, g32 = fp32
    torch.manual_seed(0)
    model = LissModel(config.load(None, ["model.ngf=8", "model.ndf=8", "model.D_rotation=true",
                                       ALL_TASKS]))
    b = batch()
    noise = torch.Generator().manual_seed(1)
    for x in (b.A.image, b.B.image):
        x.mul_(1 + 1e-3 * torch.randn(x.shape, generator=noise))
    model.generator_losses(b, EVERYTHING).total.backward()
    params = [p for g in model.generator_parameter_groups() for p in g["params"]]
    g = torch.cat([p.grad.flatten() for p in params])
    assert ((g - g32).norm() / g32.norm()).item() > 0.03


def test_channels_last_equals_contiguous(fp32) -> None:
    loss32, g32 = fp32
    loss, g = step_grads("fp32", channels_last=True)
    assert loss == pytest.approx(loss32, rel=1e-5)
    assert ((g - g32).norm() / g32.norm()).item() < 1e-4


def test_bf16_needs_no_scaler() -> None:
    assert not Precision("bf16", CPU).grad_scaler().is_enabled()
    assert Precision("fp16", CPU).grad_scaler().is_enabled()


def test_auto_resolution() -> None:
    assert resolve_precision("fp32", CPU).name == "fp32"
    assert resolve_precision("auto", CPU).name in ("bf16", "fp32")
    assert resolve_channels_last("auto", CPU) is False
    assert resolve_channels_last("true", CPU) is True


def test_fp16_on_a_cpu_warns_bf16_does_not(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="liss.precision"):
        resolve_precision("bf16", CPU)
        assert not caplog.records
        assert resolve_precision("fp16", CPU).name == "fp16"  # honoured, with a warning
    assert "fp16 on a CPU" in caplog.text and "bf16" in caplog.text
