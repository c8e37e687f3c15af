"""Mixed precision: autocast dtype from `train.precision`, one GradScaler per optimizer (fp16)."""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger(__name__)
CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # x86 flag names, as Linux lists them


def cpu_bf16_units(cpuinfo: str | Path | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 in its flags).

    Without them autocast to bf16 is emulated and many times slower than fp32. Read from
    `cpuinfo` (default /proc/cpuinfo; a Path is read, a str is the text itself) rather than
    torch's private CPU-capability probes; systems other than Linux are assumed to have none."""
    if cpuinfo is None:
        cpuinfo = CPUINFO
    if isinstance(cpuinfo, Path):
        if sys.platform != "linux":
            return False
        try:
            cpuinfo = cpuinfo.read_text()
        except OSError:
            return False
    fields = (line.partition(":") for line in cpuinfo.splitlines())
    return any(BF16_FLAGS & set(value.split()) for key, _, value in fields
               if key.strip() == "flags")


def bf16_supported(device: torch.device, cpuinfo: str | Path | None = None) -> bool:
    """Whether `device` has bf16 units: CUDA from compute capability 8.0 (Ampere; older GPUs
    emulate it), a CPU per `cpu_bf16_units`. What `precision=auto` picks bf16 by."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    return cpu_bf16_units(cpuinfo)


@dataclass(frozen=True)
class Precision:
    name: str  # resolved: fp32 | bf16 | fp16
    device: torch.device

    @property
    def dtype(self) -> torch.dtype | None:
        return DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Enabled for fp16 only: bf16 has fp32's exponent range and needs no scaling."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")


def resolve_precision(name: str, device: torch.device) -> Precision:
    if name == "auto":
        name = "bf16" if bf16_supported(device) else "fp32"
    if name == "fp16" and device.type == "cpu":
        log.warning("train.precision=fp16 on a CPU: PyTorch's CPU kernels for float16 "
                    "convolutions are slow (about 140x bf16's step time at 128 px, see "
                    "docs/benchmarks.md); use bf16 or fp32 on a CPU")
    return Precision(name, device)


def resolve_channels_last(value: str, device: torch.device) -> bool:
    """`auto` is on for CUDA only: NHWC is slower than NCHW for these convs on CPU."""
    return value == "true" or (value == "auto" and device.type == "cuda")
