"""The step modules DDP wraps: in every phase of every schedule, the parameters left trainable
(hence wrapped and reduced) are exactly those the step's losses reach, and the G step never
puts a gradient on a discriminator."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from liss import config
from liss.data.batch import Batch, DomainBatch
from liss.model import LissModel
from liss.schedule import Phase, Schedule
from liss.train.steps import DiscriminatorStep, GeneratorStep, Side, trainable

TASKS = "rotation,jigsaw,depth,gray"
SCHEDULES = ["parallel", "sequential", "additional", "liss", "representational",
             "representational-traduction"]
PASS_ALL = {f"val/{d}/{m}": v for d in "AB" for m, v in (
    ("rotation_acc", 1.0), ("jigsaw_acc", 1.0), ("depth_loss", 0.0), ("gray_loss", 0.0))}


def model_for(schedule: str, *extra: str) -> tuple[LissModel, list[Phase]]:
    cfg = config.load(None, ["model.ngf=4", "model.ndf=4", f"tasks.auxiliary_tasks={TASKS}",
                             f"schedule.task_schedule={schedule}", *extra])
    torch.manual_seed(0)
    model = LissModel(cfg)
    sched, phase = Schedule.from_config(cfg), None
    phases = [sched.initial()]
    while True:
        phase, event = sched.update(phases[-1], PASS_ALL, step=len(phases))
        if event is None:
            return model, phases
        phases.append(phase)


def batch() -> Batch:
    g = torch.Generator().manual_seed(0)

    def domain() -> DomainBatch:
        return DomainBatch(torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
                           torch.rand(2, 1, 32, 32, generator=g), torch.arange(2),
                           torch.arange(2))

    return Batch(domain(), domain())


def reached(module: torch.nn.Module) -> set[int]:
    return {id(p) for p in module.parameters() if p.grad is not None}


CASES = [(s, "freeze") for s in SCHEDULES] + [
    (s, m) for s in SCHEDULES if s.startswith("representational") for m in ("flow",
                                                                          "distillation")]


@pytest.mark.parametrize(("schedule", "repr_mode"), CASES)
def test_trainable_parameters_are_exactly_what_each_phase_reaches(schedule: str,
                                                                  repr_mode: str) -> None:
    model, phases = model_for(schedule, f"schedule.repr_mode={repr_mode}",
                              "model.D_rotation=true")
    G, D, x = GeneratorStep(model), DiscriminatorStep(model), batch()
    for phase in phases:
        if phase.distillation:
            model.update_reference(1.0)
        model.apply_phase(phase)
        model.zero_grad(set_to_none=True)
        gen = G(x, phase)
        gen.total.backward()
        assert reached(G) == {id(p) for p in trainable(G)}, phase
        assert not reached(D), f"the G step put gradients on discriminators in {phase}"
        terms = D(x, gen, dict(gen.fakes), phase)
        if terms:
            torch.stack([t.float() for t in terms.values()]).sum().backward()
        assert reached(D) == {id(p) for p in trainable(D)}, phase
    assert len(phases) >= (1 if schedule == "parallel" else 2)


def test_side_wraps_exactly_the_trainable_parameters_in_ddp() -> None:
    """A real (one-process gloo) DDP wrapper, re-made at each phase change, reduces what the
    phase trains and nothing else; a side with nothing to train is inactive."""
    model, phases = model_for("liss")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        opt = torch.optim.SGD(model.discriminator_parameters(), lr=0.1)
        side = Side("D", DiscriminatorStep(model), opt, torch.amp.GradScaler("cpu",
                                                                             enabled=False),
                    torch.device("cpu"), compile=False)
        seen = []
        for phase in phases:
            model.apply_phase(phase)
            side.wrap()
            wrapped = ({id(p) for p in side.ddp.module.parameters() if p.requires_grad}
                       if side.ddp else set())
            assert wrapped == {id(p) for p in trainable(side.step)}
            seen.append(side.active)
        # liss: rotation, jigsaw, depth train no discriminator; gray and translation do
        assert seen == [False, False, False, True, True]
    finally:
        dist.destroy_process_group()


def test_generator_step_registers_only_the_generators() -> None:
    model, _ = model_for("parallel")
    step = GeneratorStep(model)
    assert {id(p) for p in step.parameters()} == {id(p) for p in model.G.parameters()}
    assert {id(p) for p in DiscriminatorStep(model).parameters()} == {
        id(p) for p in model.discriminator_parameters()}
