"""Cost of the explicit gradient all-reduce: the training step at world size 1 vs N, same
per-rank batch (weak scaling), one thread per process, gloo on CPU / NCCL on CUDA.

    python bench/ddp_overhead.py                 # 1 vs 2 processes on this machine
    python bench/ddp_overhead.py --nproc 8 --size 256 --batch 8 --ngf 64 --device cuda

Reports per-step time, the share spent in `all_reduce_gradients`, and the overhead
t(N) / t(1) - 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def inner(args: argparse.Namespace) -> None:
    """Runs in every rank under torchrun; rank 0 prints one JSON line."""
    import torch

    from liss import config
    from liss.data import synthetic
    from liss.data.batch import Batch, DomainBatch
    from liss.distributed import init_distributed, shutdown
    from liss.train.trainer import Trainer

    env = init_distributed(args.device)
    world = env.world_size
    with tempfile.TemporaryDirectory() as tmp:
        if env.is_main:
            synthetic.generate(Path(tmp) / "d", n_train=4, n_test=1, size=32, seed=0)
        root = env.broadcast_object(str(Path(tmp) / "d"))
        cfg = config.load(None, [
            f"data.root={root}", f"data.load_size={args.size}", f"data.crop_size={args.size}",
            f"data.batch_size={args.batch * world}", f"model.ngf={args.ngf}",
            f"model.ndf={args.ngf}", f"train.precision={args.precision}", "tracking.uri=none",
            f"run.dir={tmp}", "data.backend=torch", f"train.device={args.device}"])
        env.barrier()
        trainer = Trainer(cfg, env)
    reduce_time = [0.0]
    original = env.all_reduce_gradients

    def timed(params):
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        original(params)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        reduce_time[0] += time.perf_counter() - start

    object.__setattr__(env, "all_reduce_gradients", timed)
    g = torch.Generator().manual_seed(env.rank)

    def domain() -> DomainBatch:
        return DomainBatch(torch.rand(args.batch, 3, args.size, args.size, generator=g) * 2 - 1,
                           torch.rand(args.batch, 1, args.size, args.size, generator=g),
                           torch.arange(args.batch), torch.arange(args.batch))

    batch = Batch(domain(), domain()).to(env.device, trainer.channels_last)
    for _ in range(args.warmup):
        trainer.train_step(batch)
    reduce_time[0] = 0.0
    times = []
    for _ in range(args.steps):
        env.barrier()
        start = time.perf_counter()
        trainer.train_step(batch)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if env.is_main:
        print(json.dumps({"world": world, "step_s": statistics.median(times),
                          "reduce_s": reduce_time[0] / args.steps}))
    shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=2, help="per rank")
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        inner(args)
        return
    results = []
    for n in (1, args.nproc):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={n}", __file__, "--inner", *sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode:
            sys.exit(f"world size {n} failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| world size | s/step | all-reduce s/step | all-reduce share |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['world']} | {r['step_s']:.4f} | {r['reduce_s']:.4f} "
              f"| {r['reduce_s'] / r['step_s']:.1%} |")
    print(f"\noverhead of world size {args.nproc} vs 1 (same per-rank batch): "
          f"{results[1]['step_s'] / results[0]['step_s'] - 1:+.1%}")


if __name__ == "__main__":
    main()
