"""Mixed precision: autocast dtype from `train.precision`, one GradScaler per optimizer (fp16)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger(__name__)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


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
