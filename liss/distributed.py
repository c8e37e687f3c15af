"""Process group, device and collectives.

With WORLD_SIZE > 1, or under `torchrun` with one process (TORCHELASTIC_RUN_ID set), a
process group is initialised and the step modules are wrapped in torch DDP
(`liss.train.steps`); a plain `liss train` (or one SLURM task, which the container
entrypoint runs as `liss train`) has none and runs the same step modules unwrapped. Every
collective here is a no-op for a single process.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from liss.config import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    control_group: Any = field(default=None, repr=False)  # gloo: host-side agreement

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics) to every rank. DDP does this at
        the start of each forward; validation and checkpoints read the buffers after the
        last forward, so they call this first."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def reduce_means(self, sums: Mapping[str, tuple[Tensor, float]]) -> dict[str, float]:
        """{name: (sum, count)} on each rank -> {name: global sum / global count}.

        Names are unioned across ranks first: a rank whose shard is empty (fewer validation
        images than ranks) still takes part in the same collective.
        """
        names = sorted(sums)
        if self.distributed:
            gathered: list[list[str]] = [[] for _ in range(self.world_size)]
            dist.all_gather_object(gathered, names, group=self.control_group)
            names = sorted(set().union(*gathered))
        if not names:
            return {}
        zero = (torch.zeros((), dtype=torch.float64), 0.0)
        packed = torch.stack([torch.stack([
            torch.as_tensor(sums.get(k, zero)[0], dtype=torch.float64,
                            device=self.device).reshape(()),
            torch.tensor(float(sums.get(k, zero)[1]), dtype=torch.float64, device=self.device)])
            for k in names])
        if self.distributed:
            dist.all_reduce(packed)
        values = packed.cpu().tolist()
        return {k: s / c if c else float("nan") for k, (s, c) in zip(names, values, strict=True)}

    def any_rank(self, *flags: bool) -> list[bool]:
        """For each flag, whether it is set on any rank. One all-reduce on a gloo group over
        host memory, so it never waits for the accelerator (no host sync in the step)."""
        if not self.distributed:
            return list(flags)
        t = torch.tensor([int(f) for f in flags], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control_group)
        return [bool(v) for v in t.tolist()]

    def all_equal(self, value: int) -> bool:
        """True when every rank holds the same integer (a cheap desync guard)."""
        if not self.distributed:
            return True
        t = torch.tensor([value, -value], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t[0]) == value and int(t[1]) == -value

    def gather_object(self, obj) -> list:
        """Every rank's `obj` (picklable, CPU tensors), in rank order, on rank 0; [] elsewhere.
        Over the gloo control group, so it works whatever the backend of the default one."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.control_group)
        return out or []

    def broadcast_object(self, obj):
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device", preference, "CUDA was asked for but no CUDA device "
                          "is available on this machine (use auto or cpu)")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistEnv:
    """World from the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT);
    a process group for several processes, or for one that torchrun started."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    launched = world_size > 1 or "TORCHELASTIC_RUN_ID" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    control = None
    if launched:
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, init_method="env://", rank=rank,
                                    world_size=world_size,
                                    timeout=datetime.timedelta(minutes=30),
                                    device_id=device if device.type == "cuda" else None)
        control = dist.new_group(backend="gloo") if device.type == "cuda" else dist.group.WORLD
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                   control_group=control)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
