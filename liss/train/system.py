"""System metrics logged with the training losses: what the process and device use."""

from __future__ import annotations

import torch


def system_metrics(device: torch.device) -> dict[str, float]:
    """`system/...`: CPU % since the last call, process RSS, device memory high-water mark.

    psutil is imported here, not at module level, so a machine without it can still train
    with `tracking.log_system_metrics=false` (the trainer imports this module)."""
    try:
        import psutil
    except ImportError as e:
        raise ImportError(f"tracking.log_system_metrics needs psutil ({e}): pip install psutil, "
                          "or set tracking.log_system_metrics=false") from None
    process = psutil.Process()
    out = {"system/cpu_percent": psutil.cpu_percent(interval=None),
           "system/memory_rss_gb": process.memory_info().rss / 2**30}
    if device.type == "cuda":
        out["system/gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["system/gpu_memory_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 2**30
    return out
