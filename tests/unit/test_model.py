"""The model's losses per phase: which terms exist, that they are finite, what they train."""

from __future__ import annotations

import pytest
import torch

from liss import config
from liss.data.batch import Batch, DomainBatch
from liss.model import LissModel, other
from liss.schedule import DECODERS, ENCODERS, IDENTITY, TASK_HEADS, TRANSLATION, Phase
from liss.tasks.jigsaw import N_PERMUTATIONS
from liss.tasks.rotation import rotation_stack
from tests.conftest import ALL_TASKS

TASKS = ("rotation", "jigsaw", "depth", "gray")
EVERYTHING = Phase(0, (*TASKS, IDENTITY, TRANSLATION))


def make_model(*overrides: str) -> LissModel:
    torch.manual_seed(0)
    return LissModel(config.load(None, ["model.ngf=4", "model.ndf=4", ALL_TASKS, *overrides]))


def domain_batch(n: int = 2, size: int = 32, seed: int = 0) -> DomainBatch:
    g = torch.Generator().manual_seed(seed)
    return DomainBatch(torch.rand(n, 3, size, size, generator=g) * 2 - 1,
                       torch.rand(n, 1, size, size, generator=g), torch.arange(n) + seed,
                       torch.arange(n))


@pytest.fixture
def batch() -> Batch:
    return Batch(domain_batch(seed=1), domain_batch(seed=2))


def test_all_terms_present_and_finite(batch: Batch) -> None:
    m = make_model("model.D_rotation=true")
    m.update_reference(1.0)
    gen = m.generator_losses(batch, Phase(0, EVERYTHING.active, distillation=True))
    expected = {f"{t}_{d}" for t in TASKS for d in "AB"} | {
        f"{k}_{d}" for k in ("G", "cycle", "idt", "distill") for d in "AB"} | {
        "G_A_rot", "G_B_rot"}
    assert set(gen.terms) == expected
    assert all(torch.isfinite(v) for v in gen.terms.values())
    d_terms = m.discriminator_losses(batch, gen, gen.fakes, EVERYTHING)
    assert set(d_terms) == {"D_A", "D_B", "D_A_rot", "D_B_rot", "D_A_gray", "D_B_gray",
                            "D_A_gray_rot", "D_B_gray_rot"}
    assert all(torch.isfinite(v) for v in d_terms.values())


def test_phase_gates_the_terms(batch: Batch) -> None:
    m = make_model()
    only_rotation = m.generator_losses(batch, Phase(0, ("rotation",)))
    assert set(only_rotation.terms) == {"rotation_A", "rotation_B"} and not only_rotation.fakes
    translation = m.generator_losses(batch, Phase(4, (IDENTITY, TRANSLATION)))
    assert set(translation.terms) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"}
    assert m.discriminator_losses(batch, only_rotation, {}, Phase(0, ("rotation",))) == {}


def test_initial_losses_are_near_chance(batch: Batch) -> None:
    m = make_model()
    gen = m.generator_losses(batch, EVERYTHING)
    assert gen.terms["rotation_A"].item() == pytest.approx(torch.log(torch.tensor(4.)).item(),
                                                           abs=0.2)
    assert gen.terms["jigsaw_A"].item() == pytest.approx(
        torch.log(torch.tensor(float(N_PERMUTATIONS))).item(), abs=0.3)


def test_weights_scale_terms(batch: Batch) -> None:
    base = make_model().generator_losses(batch, EVERYTHING).terms
    heavy = make_model("loss.lambda_R=3", "loss.lambda_CA=20").generator_losses(
        batch, EVERYTHING).terms
    assert heavy["rotation_A"].item() == pytest.approx(3 * base["rotation_A"].item(), rel=1e-5)
    assert heavy["cycle_A"].item() == pytest.approx(2 * base["cycle_A"].item(), rel=1e-5)
    # identity of G_B is weighted by λ_I · λ_CA (it reconstructs A images)
    assert heavy["idt_B"].item() == pytest.approx(2 * base["idt_B"].item(), rel=1e-5)


def test_crossed_and_same_identity_differ(batch: Batch) -> None:
    phase = Phase(0, (IDENTITY,))
    crossed = make_model().generator_losses(batch, phase).terms["idt_A"]
    same = make_model("model.identity=same").generator_losses(batch, phase).terms["idt_A"]
    assert crossed.item() != pytest.approx(same.item())


def test_generator_step_leaves_discriminators_without_grads(batch: Batch) -> None:
    m = make_model()
    m.generator_losses(batch, EVERYTHING).total.backward()
    assert all(p.grad is None for p in m.discriminator_parameters())
    assert all(p.grad is not None for p in m.G["A"].parameters())


def test_apply_phase_freezes_groups() -> None:
    m = make_model()
    m.apply_phase(Phase(1, (IDENTITY, TRANSLATION), frozen=(ENCODERS, TASK_HEADS)))
    assert not any(p.requires_grad for p in m.G["A"].encoder.parameters())
    assert not any(p.requires_grad for p in m.G["B"].heads["depth"].parameters())
    assert all(p.requires_grad for p in m.G["A"].decoder.parameters())
    m.apply_phase(Phase(0, TASKS, frozen=(DECODERS,)))
    assert all(p.requires_grad for p in m.G["A"].encoder.parameters())
    assert not any(p.requires_grad for p in m.G["B"].decoder.parameters())


def test_validation_sums_count_samples(batch: Batch) -> None:
    m = make_model()
    sums = m.validation_sums("A", batch.A)
    rot_correct, rot_count = sums["val/A/rotation_acc"]
    assert rot_count == 8 and 0 <= rot_correct.item() <= 8
    assert sums["val/A/jigsaw_acc"][1] == 2 and sums["val/A/depth_loss"][1] == 2
    assert {"val/A/cycle_l1", "val/A/idt_l1"} <= set(sums)
    assert "val/A/distill_l1" not in sums  # no reference yet


def test_parameter_groups_cover_the_generators_once() -> None:
    m = make_model()
    groups = m.generator_parameter_groups()
    assert [g["group_name"] for g in groups] == ["default", *TASKS]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for d in "AB" for _ in m.G[d].parameters())


def test_d_rotation_sees_its_own_domain_once(batch: Batch,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """SSGAN term of D_d (which judges G_d's output, domain other(d)): one 5-way call per
    step on the four rotations of *that* domain's real images plus G_d's fakes (class 4)."""
    m = make_model("model.D_rotation=true", "tasks.auxiliary_tasks=[]")
    gen = m.generator_losses(batch, Phase(0, (IDENTITY, TRANSLATION)))
    seen: dict[str, list[torch.Tensor]] = {"A": [], "B": []}
    original_logits = {d: m.D[d].rotation_logits for d in "AB"}
    for d in "AB":
        original = m.D[d].forward

        def spy(x: torch.Tensor, rotation: bool = False, d=d, original=original
                ) -> torch.Tensor:
            if rotation:
                seen[d].append(x.detach().clone())
            return original(x, rotation)

        monkeypatch.setattr(m.D[d], "forward", spy)
    terms = m.discriminator_losses(batch, gen, gen.fakes, Phase(0, (IDENTITY, TRANSLATION)))
    for d in "AB":
        (x,) = seen[d]  # counted once
        stack, labels = rotation_stack(batch[other(d)].image)
        fakes = gen.fakes[d].detach()
        assert torch.equal(x, torch.cat([stack, fakes]))
        with torch.no_grad():
            logits = original_logits[d](x)
        target = torch.cat([labels, torch.full((len(fakes),), 4)])
        expected = torch.nn.functional.cross_entropy(logits.float(), target)
        assert terms[f"D_{d}_rot"].item() == pytest.approx(expected.item(), rel=1e-6)
