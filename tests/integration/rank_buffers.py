"""Run under torchrun by tests/integration/test_distributed.py: train with the given overrides,
then save this rank's module buffers (batch-norm running statistics) to OUT/buffers_<rank>.pt,
which a checkpoint (rank 0's state only) cannot show."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from liss import config
from liss.distributed import init_distributed, shutdown
from liss.train.trainer import Trainer


def main(out: Path, overrides: list[str]) -> int:
    cfg = config.load(None, overrides)
    env = init_distributed("cpu")
    try:
        trainer = Trainer(cfg, env)
        code = trainer.fit()
        torch.save(dict(trainer.model.named_buffers()), out / f"buffers_{env.rank}.pt")
        return code
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
