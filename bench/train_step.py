"""Throughput, peak memory and achieved FLOP/s of the real training step (`Trainer.train_step`).

Every configuration runs in its own process (clean peak-memory reading), on fixed random
batches already on the device, so the numbers are the step alone (no data loading).

    python bench/train_step.py                                   # the CPU subset
    python bench/train_step.py --sizes 256 --batches 8 16 --precisions bf16 --device cuda

Prints a markdown table; `--json OUT` also writes the raw numbers. The last column is the
step's achieved FLOP/s as a share of a bf16 matmul's on the same device, measured first (a
square matmul, 8192 on CUDA, 2048 on a CPU): the practical ceiling for the step's convs.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

from isolated import collect, run_child

CONFIGS = {  # name -> overrides: the CycleGAN-equivalent run and the full LiSS run
    "cyclegan": ["tasks.auxiliary_tasks=[]"],
    "liss": ["tasks.auxiliary_tasks=rotation,jigsaw,depth,gray"],
}


def measure(args: argparse.Namespace) -> dict:
    """One configuration, in this process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from liss import config
    from liss.data import synthetic
    from liss.data.batch import Batch, DomainBatch
    from liss.distributed import init_distributed
    from liss.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        synthetic.generate(Path(tmp) / "data", n_train=4, n_test=1, size=32, seed=0)
        cfg = config.load(None, [
            f"data.root={Path(tmp) / 'data'}", f"data.load_size={args.size}",
            f"data.crop_size={args.size}", f"data.batch_size={args.batch}",
            f"model.ngf={args.ngf}", f"model.ndf={args.ngf}", f"train.precision={args.precision}",
            f"train.channels_last={'true' if args.format == 'channels_last' else 'false'}",
            f"train.device={args.device}", "tracking.uri=none", f"run.dir={tmp}",
            "data.backend=torch", *CONFIGS[args.config]])
        trainer = Trainer(cfg, init_distributed(cfg.train.device))
    dev = trainer.env.device
    g = torch.Generator().manual_seed(0)

    def domain() -> DomainBatch:
        return DomainBatch(torch.rand(args.batch, 3, args.size, args.size, generator=g) * 2 - 1,
                           torch.rand(args.batch, 1, args.size, args.size, generator=g),
                           torch.arange(args.batch), torch.arange(args.batch))

    batch = Batch(domain(), domain()).to(dev, trainer.channels_last)

    def step() -> None:
        trainer.train_step(batch)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    with FlopCounterMode(display=False) as counter:
        step()
    seconds = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"config": args.config, "size": args.size, "batch": args.batch,
            "precision": trainer.precision.name, "format": args.format,
            "step_s": seconds, "img_per_s": args.batch / seconds, "peak_gb": peak / 2**30,
            "tflops": counter.get_total_flops() / seconds / 1e12, "device": str(dev)}


def matmul_rate(device: str) -> dict:
    """Achieved TFLOP/s of a large square bf16 matmul (median of 10 after 3 warm-ups)."""
    import torch

    dev = torch.device(device if device != "auto" else
                       "cuda" if torch.cuda.is_available() else "cpu")
    n = 8192 if dev.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
    times = []
    for i in range(13):
        start = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return {"tflops": 2 * n**3 / statistics.median(times) / 1e12, "n": n, "device": str(dev)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--sizes", nargs="+", type=int, default=[128])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    p.add_argument("--formats", nargs="+", default=["contiguous", "channels_last"])
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--precision", help=argparse.SUPPRESS)
    p.add_argument("--format", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(matmul_rate(args.device) if args.config == "matmul" else measure(args)))
        return

    peak = run_child(["--config=matmul", f"--device={args.device}"], "bf16 matmul")
    if peak is None:
        raise SystemExit("could not measure the bf16 matmul rate")
    print(f"bf16 matmul ({peak['n']}², {peak['device']}): {peak['tflops']:.3f} TFLOP/s\n")

    points = (([f"--config={c}", f"--size={s}", f"--batch={b}", f"--precision={p}",
                f"--format={f}", f"--ngf={args.ngf}", f"--steps={args.steps}",
                f"--warmup={args.warmup}", f"--device={args.device}"],
               f"{c} {s}px b{b} {p} {f}")
              for c, s, b, p, f in itertools.product(args.configs, args.sizes, args.batches,
                                                     args.precisions, args.formats))
    collect(points, functools.partial(row, matmul_tflops=peak["tflops"]), HEAD, args.json)


HEAD = ("| config | px | batch | precision | format | s/step | img/s | peak GB | TFLOP/s "
        "| of bf16 matmul |\n|---|---|---|---|---|---|---|---|---|---|")


def row(r: dict, matmul_tflops: float) -> str:
    return (f"| {r['config']} | {r['size']} | {r['batch']} | {r['precision']} | {r['format']} "
            f"| {r['step_s']:.3f} | {r['img_per_s']:.2f} | {r['peak_gb']:.2f} "
            f"| {r['tflops']:.3f} | {r['tflops'] / matmul_tflops:.1%} |")


if __name__ == "__main__":
    main()
