"""Process group, device and collectives. A single process is world size 1 with the same
code path: every collective is a no-op there.

Gradients are averaged by an explicit bucketed all-reduce after each backward instead of
DDP wrappers: LiSS runs several forward passes through the same encoder per step, switches
task heads on and off and freezes modules at phase changes, all of which DDP's
one-forward/one-backward, fixed-parameter-set model handles badly (hangs with unused
parameters, errors on re-entrant use). The all-reduce covers exactly the parameters that
received a gradient, and the schedule is identical on every rank (it is driven by
all-reduced validation metrics), so every rank reduces the same tensors in the same order.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from liss.config import ConfigError

BUCKET_BYTES = 32 * 2**20


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

    def all_reduce_gradients(self, params: Iterable[Tensor]) -> None:
        """Average `.grad` over ranks, in flat buckets, all launched before any wait."""
        if not self.distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        pending = []
        for bucket in _buckets(grads):
            flat = torch._utils._flatten_dense_tensors(bucket)
            pending.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
        for bucket, flat, work in pending:
            work.wait()
            flat.div_(self.world_size)
            for g, reduced in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket),
                                  strict=True):
                g.copy_(reduced)

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


def _buckets(tensors: list[Tensor]) -> Iterable[list[Tensor]]:
    bucket: list[Tensor] = []
    size = 0
    for t in tensors:
        if bucket and (size + t.numel() * t.element_size() > BUCKET_BYTES
                       or t.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel() * t.element_size()
    if bucket:
        yield bucket


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device", preference, "CUDA was asked for but no CUDA device "
                          "is available on this machine (use auto or cpu)")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistEnv:
    """World from the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    control = None
    if world_size > 1:
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
