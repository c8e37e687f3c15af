"""The LiSS model: two generators sharing their encoders with task heads, discriminators,
reference encoders, and the losses of one step for the current schedule phase (spec §4, §7).

Naming follows the paper's code: `G["A"]` (G_A) translates A->B, so its fakes live in
domain B and are judged by `D["A"]` (D_A). Tasks of domain d run through G_d's encoder.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from liss.config import Config
from liss.data.batch import Batch, DomainBatch
from liss.losses import gan_loss, l1
from liss.nn.blocks import call_frozen, init_weights
from liss.nn.discriminator import Discriminator
from liss.nn.generator import Encoder, Generator, ImageHead
from liss.schedule import (
    DECODERS,
    ENCODERS,
    IDENTITY,
    TASK_HEADS,
    TRANSLATION,
    TRANSLATION_DS,
    Phase,
)
from liss.tasks import AuxTask, build_tasks
from liss.tasks.rotation import N_ROTATIONS, center_square, rotation_stack

DOMAINS = ("A", "B")
FAKE_CLASS = N_ROTATIONS  # the D rotation head's fifth class


def other(domain: str) -> str:
    return "B" if domain == "A" else "A"


@dataclass
class GeneratorOutput:
    """Weighted loss terms of the G step and what the D step needs from it."""

    terms: dict[str, Tensor]
    fakes: dict[str, Tensor] = field(default_factory=dict)  # fakes[d] = G_d(real_d)
    task_preds: dict[str, Tensor] = field(default_factory=dict)  # "gray_A": prediction

    @property
    def total(self) -> Tensor:
        return torch.stack([t.float() for t in self.terms.values()]).sum()


class LissModel(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        self.tasks: list[AuxTask] = build_tasks(cfg.tasks.auxiliary_tasks, cfg.loss.gan_mode)
        self.G = nn.ModuleDict({d: self._generator() for d in DOMAINS})
        self.D = nn.ModuleDict({d: self._discriminator() for d in DOMAINS})
        self.task_D = nn.ModuleDict({f"{t.name}_{d}": self._discriminator()
                                     for t in self.tasks if t.has_discriminator
                                     for d in DOMAINS})
        self.E_ref = nn.ModuleDict()  # reference encoders, built at the first schedule switch
        for net in (*self.G.values(), *self.D.values(), *self.task_D.values()):
            init_weights(net, m.init_type, m.init_gain)
        self.memory_format = torch.contiguous_format

    # ------------------------------------------------------------------ construction

    def _generator(self) -> Generator:
        m = self.cfg.model
        dropout = not m.no_dropout
        heads: dict[str, nn.Module] = {
            "decoder": ImageHead(m.ngf, m.head_blocks, m.norm, 3, tanh=True, dropout=dropout)}
        heads.update({t.name: t.head(m) for t in self.tasks})
        return Generator(Encoder(m.ngf, m.encoder_blocks, m.norm, dropout), heads)

    def _discriminator(self) -> Discriminator:
        m = self.cfg.model
        return Discriminator(m.ndf, m.n_layers_D, m.norm, rotation_head=m.D_rotation)

    def networks(self) -> dict[str, nn.Module]:
        """Checkpoint names: G_A, G_B, D_A, D_B, D_A_gray, ..., E_A_ref, E_B_ref."""
        nets: dict[str, nn.Module] = {f"G_{d}": self.G[d] for d in DOMAINS}
        nets.update({f"D_{d}": self.D[d] for d in DOMAINS})
        for key, net in self.task_D.items():
            task, d = key.rsplit("_", 1)
            nets[f"D_{d}_{task}"] = net
        nets.update({f"E_{d}_ref": enc for d, enc in self.E_ref.items()})
        return nets

    def network_states(self) -> dict[str, dict[str, Tensor]]:
        """Each network's state dict under its checkpoint name."""
        return {name: net.state_dict() for name, net in self.networks().items()}

    def load_network_states(self, states: dict[str, dict[str, Tensor]]) -> None:
        if "E_A_ref" in states:
            self.build_reference_slots()
        missing = sorted(set(self.networks()) - set(states))
        if missing:
            raise ValueError(f"checkpoint lacks networks {missing}")
        for name, net in self.networks().items():
            net.load_state_dict(states[name])

    def generator_parameter_groups(self) -> list[dict]:
        """`default` (encoders + decoders) and one group per task (its heads in G_A and G_B)."""
        groups = [{"group_name": "default", "params": [
            p for d in DOMAINS for mod in (self.G[d].encoder, self.G[d].decoder)
            for p in mod.parameters()]}]
        for t in self.tasks:
            groups.append({"group_name": t.name, "task": t.name,
                           "params": [p for d in DOMAINS for p in self.G[d].heads[t.name]
                                      .parameters()]})
        return groups

    def discriminator_parameters(self) -> list[Tensor]:
        return [p for net in (*self.D.values(), *self.task_D.values()) for p in net.parameters()]

    def prepare_tasks(self, device: torch.device) -> None:
        """Tasks' device-side constants, built once before any (compiled) step."""
        for t in self.tasks:
            t.prepare(device)

    def use_channels_last(self) -> None:
        self.memory_format = torch.channels_last
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> LissModel:
        super().train(mode)
        self.E_ref.eval()  # references are fixed targets (matters only with batch norm)
        return self

    # ------------------------------------------------------------------ phase effects

    def apply_phase(self, phase: Phase) -> None:
        """`requires_grad` = what the phase trains, on every network: frozen groups, heads of
        inactive tasks, decoders without translation or identity, discriminators the phase
        does not train. The parameters left trainable are exactly those the step's losses
        reach, which is what DDP (without `find_unused_parameters`) requires."""
        uses_decoders = TRANSLATION in phase or IDENTITY in phase
        for g in self.G.values():
            g.encoder.requires_grad_(ENCODERS not in phase.frozen)
            g.decoder.requires_grad_(uses_decoders and DECODERS not in phase.frozen)
            for t in self.tasks:
                g.heads[t.name].requires_grad_(t.name in phase
                                               and TASK_HEADS not in phase.frozen)
        for d in self.D.values():
            d.requires_grad_(self.trains_translation_discriminators(phase))
        for t in self.tasks:
            if t.has_discriminator:
                for d in DOMAINS:
                    self.task_D[f"{t.name}_{d}"].requires_grad_(t.name in phase)

    @staticmethod
    def trains_translation_discriminators(phase: Phase) -> bool:
        return TRANSLATION in phase and TRANSLATION_DS not in phase.frozen

    @torch.no_grad()
    def update_reference(self, alpha: float) -> None:
        """Reference encoder := α·current + (1−α)·previous reference (α=1: a snapshot)."""
        for d in DOMAINS:
            current = self.G[d].encoder
            if d not in self.E_ref:
                ref = copy.deepcopy(current).requires_grad_(False).eval()
                self.E_ref[d] = ref
                continue
            ref_state = self.E_ref[d].state_dict()
            for name, value in current.state_dict().items():
                if value.is_floating_point():
                    ref_state[name].mul_(1.0 - alpha).add_(value, alpha=alpha)
                else:
                    ref_state[name].copy_(value)

    def build_reference_slots(self) -> None:
        """Create reference encoders (to be filled by a checkpoint load)."""
        for d in DOMAINS:
            if d not in self.E_ref:
                self.E_ref[d] = copy.deepcopy(self.G[d].encoder).requires_grad_(False).eval()

    # ------------------------------------------------------------------ losses

    def _fmt(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=self.memory_format)

    def _task_forward(self, task: AuxTask, d: str, x: DomainBatch, z_real: Tensor | None
                      ) -> tuple[Tensor, Tensor]:
        """(prediction, target) of one task on one domain; z_real is E_d(real) if computed."""
        g = self.G[d]
        inputs = task.inputs(x.image, x.depth, x.key)
        if inputs.input is None:
            features = z_real if z_real is not None else g.encoder(x.image)
        else:
            features = g.encoder(self._fmt(inputs.input))
        return g.heads[task.name](features), inputs.target

    def _task_discriminator(self, task: AuxTask, d: str) -> nn.Module | None:
        return self.task_D[f"{task.name}_{d}"] if task.has_discriminator else None

    def _rotation_ce(self, D: nn.Module, images: Tensor, frozen: bool = False) -> Tensor:
        stack, labels = rotation_stack(images)
        stack = self._fmt(stack)
        logits = call_frozen(D, stack, rotation=True) if frozen else D(stack, rotation=True)
        return F.cross_entropy(logits.float(), labels)

    def generator_losses(self, batch: Batch, phase: Phase) -> GeneratorOutput:
        """All active G-side terms, weighted (spec §4.4). Discriminators are called frozen
        (`call_frozen`): their weights get no gradient from this loss."""
        m = self.cfg.model
        out = GeneratorOutput(terms={})
        real = {d: batch[d].image for d in DOMAINS}
        # E_d(real_d) is shared by translation, crossed identity, distillation and depth;
        # a phase with none of the first three lets each task encode on its own.
        needs_z = (TRANSLATION in phase or phase.distillation
                   or (IDENTITY in phase and m.identity == "crossed"))
        z = {d: self.G[d].encoder(real[d]) for d in DOMAINS} if needs_z else {}
        self._task_terms(batch, phase, z, out)
        if TRANSLATION in phase:
            self._translation_terms(real, z, out)
        if IDENTITY in phase:
            self._identity_terms(real, z, out)
        if phase.distillation and self.E_ref:
            for d in DOMAINS:
                with torch.no_grad():
                    target = self.E_ref[d](real[d])
                out.terms[f"distill_{d}"] = self.cfg.loss.lambda_distillation * l1(z[d], target)
        return out

    def _task_terms(self, batch: Batch, phase: Phase, z: dict[str, Tensor],
                    out: GeneratorOutput) -> None:
        for t in self.tasks:
            if t.name not in phase:
                continue
            weight = getattr(self.cfg.loss, t.lambda_key)
            for d in DOMAINS:
                pred, target = self._task_forward(t, d, batch[d], z.get(d))
                critic = self._task_discriminator(t, d)
                frozen = functools.partial(call_frozen, critic) if critic else None
                out.terms[f"{t.name}_{d}"] = weight * t.loss(pred, target, frozen)
                if t.has_discriminator:
                    out.task_preds[f"{t.name}_{d}"] = pred.detach()

    def _translation_terms(self, real: dict[str, Tensor], z: dict[str, Tensor],
                           out: GeneratorOutput) -> None:
        """Adversarial, cycle and (with `model.D_rotation`) SSGAN terms; fills `out.fakes`."""
        L = self.cfg.loss
        adv_weight = {"A": L.lambda_DA, "B": L.lambda_DB}
        for d in DOMAINS:
            out.fakes[d] = self.G[d].decoder(z[d])
        for d in DOMAINS:
            o, fake, D = other(d), out.fakes[d], self.D[d]
            out.terms[f"G_{d}"] = adv_weight[d] * gan_loss(call_frozen(D, fake), True,
                                                           L.gan_mode)
            out.terms[f"cycle_{d}"] = self._cycle_weight(d) * l1(self.G[o](fake), real[d])
            if self.cfg.model.D_rotation:
                with torch.no_grad():
                    ce_real = self._rotation_ce(D, real[o])
                ce_fake = self._rotation_ce(D, fake, frozen=True)
                out.terms[f"G_{d}_rot"] = L.lambda_DR * (ce_fake - ce_real).abs()

    def _identity_terms(self, real: dict[str, Tensor], z: dict[str, Tensor],
                        out: GeneratorOutput) -> None:
        for d in DOMAINS:
            o = other(d)  # G_d maps into domain o, so o-images should pass unchanged
            code = z[o] if self.cfg.model.identity == "crossed" else self.G[d].encoder(real[o])
            idt = self.G[d].decoder(code)
            out.terms[f"idt_{d}"] = self.cfg.loss.lambda_I * self._cycle_weight(o) * l1(idt,
                                                                                      real[o])

    def _cycle_weight(self, d: str) -> float:
        return self.cfg.loss.lambda_CA if d == "A" else self.cfg.loss.lambda_CB

    def discriminator_losses(self, batch: Batch, gen: GeneratorOutput,
                             pooled: dict[str, Tensor], phase: Phase) -> dict[str, Tensor]:
        """D terms for the discriminators the phase trains; `pooled[d]` = pool(gen.fakes[d])."""
        L, m = self.cfg.loss, self.cfg.model
        terms: dict[str, Tensor] = {}
        if self.trains_translation_discriminators(phase):
            for d in DOMAINS:
                D, real = self.D[d], batch[other(d)].image
                terms[f"D_{d}"] = 0.5 * (gan_loss(D(real), True, L.gan_mode)
                                         + gan_loss(D(pooled[d].detach()), False, L.gan_mode))
                if m.D_rotation:
                    terms[f"D_{d}_rot"] = self._d_rotation_loss(D, real, gen.fakes[d].detach())
        for t in self.tasks:
            if not (t.has_discriminator and t.name in phase):
                continue
            for d in DOMAINS:
                D, real = self.task_D[f"{t.name}_{d}"], batch[d].image
                pred = gen.task_preds[f"{t.name}_{d}"]
                terms[f"D_{d}_{t.name}"] = 0.5 * (gan_loss(D(real), True, L.gan_mode)
                                                  + gan_loss(D(pred), False, L.gan_mode))
                if m.D_rotation:
                    terms[f"D_{d}_{t.name}_rot"] = self._rotation_ce(D, real)
        return terms

    def _d_rotation_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """SSGAN 5-way term, once: real rotations of D's own domain (0-3) and fakes (4)."""
        # one square for both: under data.preprocess=none the two domains' sizes differ
        side = min(*real.shape[-2:], *fake.shape[-2:])
        stack, labels = rotation_stack(center_square(real, side))
        fake_labels = torch.full((fake.shape[0],), FAKE_CLASS, device=fake.device)
        logits = D(self._fmt(torch.cat([stack, center_square(fake, side)])), rotation=True)
        return F.cross_entropy(logits.float(), torch.cat([labels, fake_labels]))

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def validation_sums(self, d: str, x: DomainBatch) -> dict[str, tuple[Tensor, int]]:
        """Per-metric (sum, count) on one domain's batch, every branch on (spec §8.3).

        Sums and counts, not means, so batches and ranks pool exactly.
        """
        n = len(x)
        sums: dict[str, tuple[Tensor, int]] = {}
        z = self.G[d].encoder(x.image)
        for t in self.tasks:
            pred, target = self._task_forward(t, d, x, z)
            loss = t.loss(pred, target, self._task_discriminator(t, d))
            sums[f"val/{d}/{t.name}_loss"] = (loss * n, n)
            if t.metric == "acc":
                sums[f"val/{d}/{t.name}_acc"] = (t.correct(pred, target).float(), t.count(target))
        o = other(d)
        fake = self.G[d].decoder(z)
        sums[f"val/{d}/cycle_l1"] = (l1(self.G[o](fake), x.image) * n, n)
        code = z if self.cfg.model.identity == "crossed" else self.G[o].encoder(x.image)
        sums[f"val/{d}/idt_l1"] = (l1(self.G[o].decoder(code), x.image) * n, n)
        if self.E_ref:
            sums[f"val/{d}/distill_l1"] = (l1(z, self.E_ref[d](x.image)) * n, n)
        return sums

    @torch.no_grad()
    def translate(self, d: str, images: Tensor) -> Tensor:
        """G_d(images): domain d -> other(d)."""
        return self.G[d](self._fmt(images))

    @torch.no_grad()
    def visuals(self, d: str, x: DomainBatch) -> dict[str, Tensor]:
        """Rows of the image grid for domain d, all in [-1, 1] with 3 channels."""
        g, o = self.G[d], other(d)
        z = g.encoder(x.image)
        fake = g.decoder(z)
        rows = {"real": x.image, "translated": fake, "reconstructed": self.G[o](fake)}
        for t in self.tasks:
            if t.name == "depth":
                pred = g.heads["depth"](z)
                rows["depth"] = _as_rgb(pred)
                if x.depth is not None:
                    rows["depth_target"] = _as_rgb(t.inputs(x.image, x.depth, x.key).target)
            if t.name == "gray":
                inputs = t.inputs(x.image, x.depth, x.key)
                rows["gray"] = g.heads["gray"](g.encoder(self._fmt(inputs.input)))
        return {k: v.float() for k, v in rows.items()}


def _as_rgb(depth: Tensor) -> Tensor:
    """Min-max rescale a [N,1,H,W] map over the batch to [-1, 1], as 3 channels."""
    lo, hi = depth.amin(), depth.amax()
    return ((depth - lo) / (hi - lo + 1e-8) * 2 - 1).expand(-1, 3, -1, -1).float()
