"""A single SLURM task (RANK 0 of WORLD_SIZE 1, MASTER_ADDR a host name) is a plain run: no
process group, no rendezvous (tests/integration/test_torchrun_world_of_one.py: torchrun's one)."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from liss.distributed import init_distributed


def test_one_slurm_task_starts_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                        "MASTER_ADDR": "no-such-host.invalid", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    env = init_distributed("cpu")
    assert not dist.is_initialized() and env.world_size == 1 and env.is_main
