"""torchrun with one process (TORCHELASTIC_RUN_ID set) starts a process group of one, on a
TCP store on 127.0.0.1, so the step modules are DDP-wrapped as at any world size."""

from __future__ import annotations

import socket

import pytest
import torch.distributed as dist

from liss.distributed import init_distributed, shutdown


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_with_one_process_starts_a_group_of_one(monkeypatch: pytest.MonkeyPatch,
                                                         tiny_config) -> None:
    from liss.train.trainer import Trainer

    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
                        "TORCHELASTIC_RUN_ID": "test"}.items():
        monkeypatch.setenv(name, value)
    try:
        trainer = Trainer(tiny_config("tracking.uri=none"), init_distributed("cpu"))
        assert dist.is_initialized() and dist.get_world_size() == 1
        assert all(side.ddp is not None for side in trainer.sides.values())
    finally:
        shutdown()
