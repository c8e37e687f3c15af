"""Throughput, peak memory and achieved FLOP/s of the real training step (`Trainer.train_step`).

Every configuration runs in its own process (clean peak-memory reading), on fixed random
batches already on the device, so the numbers are the step alone (no data loading).

    python bench/train_step.py                                   # the CPU subset
    python bench/train_step.py --sizes 256 --batches 8 16 --precisions bf16 --device cuda

Prints a markdown table; `--json OUT` also writes the raw numbers. The last column is the
step's achieved FLOP/s as a share of a matmul's in the row's own precision on the same
device, measured first (a square matmul, 8192 on CUDA, 2048 on a CPU): the practical ceiling
for the step's convs. bf16 rows are skipped, with a note, on a device without bf16 units
(`liss.precision.bf16_supported`), where bf16 is emulated many times slower than fp32.
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
from typing import TYPE_CHECKING

from isolated import collect, run_child

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")

CONFIGS = {  # name -> overrides: the CycleGAN-equivalent run and the full LiSS run
    "cyclegan": ["tasks.auxiliary_tasks=[]"],
    "liss": ["tasks.auxiliary_tasks=rotation,jigsaw,depth,gray"],
}


def measure(args: argparse.Namespace) -> dict:
    """One configuration, in this process."""
    import torch
    import torch.distributed as dist
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
            f"train.device={args.device}", f"train.compile={str(args.compile).lower()}",
            "optim.name=radam", "tracking.uri=none", f"run.dir={tmp}", "data.backend=torch",
            *CONFIGS[args.config]])
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
    group = dist.get_backend() if dist.is_initialized() else None
    if group:
        dist.destroy_process_group()
    flops = counter.get_total_flops()
    return {"config": args.config, "size": args.size, "batch": args.batch,
            "precision": trainer.precision.name, "format": args.format,
            "compiled": args.compile, "step_s": seconds, "img_per_s": args.batch / seconds,
            "peak_gb": peak / 2**30, "flops": flops, "tflops": flops / seconds / 1e12,
            "process_group": group, "device": str(dev)}


def device_of(name: str) -> torch.device:
    """`--device` as a torch.device (`auto`: CUDA where there is one)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def matmul_rate(device: str, precision: str) -> dict:
    """Achieved TFLOP/s of a large square matmul in `precision` (median of up to 10 runs
    after the warm-ups; at least 3, fewer than 10 only past 5 s, for slow CPU dtypes)."""
    import torch

    dev = device_of(device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    n = 8192 if dev.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))

    def timed() -> float:
        start = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(3 if dev.type == "cuda" else 1):
        timed()
    times: list[float] = []
    while len(times) < 3 or (len(times) < 10 and sum(times) < 5):
        times.append(timed())
    return {"precision": precision, "tflops": 2 * n**3 / statistics.median(times) / 1e12,
            "n": n, "device": str(dev)}


def supported_precisions(precisions: list[str], device: str) -> list[str]:
    """`precisions` less bf16 where the device has no bf16 units (said on stdout)."""
    from liss.precision import bf16_supported

    dev = device_of(device)
    if "bf16" not in precisions or bf16_supported(dev):
        return precisions
    print(f"bf16 rows skipped: this {dev.type} has no bf16 units (a CPU lists avx512_bf16 "
          "or amx_bf16 among its /proc/cpuinfo flags), so bf16 would be emulated, many "
          "times slower than fp32\n")
    return [p for p in precisions if p != "bf16"]


def matmul_ceilings(precisions: list[str], device: str) -> dict[str, float]:
    """TFLOP/s of the matmul in each of `precisions`, each in its own process."""
    ceilings = {}
    for precision in precisions:
        peak = run_child(["--config=matmul", f"--precision={precision}", f"--device={device}"],
                         f"{precision} matmul")
        if peak is None:
            raise SystemExit(f"could not measure the {precision} matmul rate")
        print(f"{precision} matmul ({peak['n']}², {peak['device']}): {peak['tflops']:.3f} "
              "TFLOP/s")
        ceilings[precision] = peak["tflops"]
    print()
    return ceilings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--sizes", nargs="+", type=int, default=[128])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--formats", nargs="+", default=["contiguous", "channels_last"])
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="train.compile=true (torch.compile)")
    p.add_argument("--json", type=Path)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--precision", help=argparse.SUPPRESS)
    p.add_argument("--format", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(matmul_rate(args.device, args.precision) if args.config == "matmul"
                         else measure(args)))
        return

    precisions = supported_precisions(args.precisions, args.device)
    ceilings = matmul_ceilings(precisions, args.device)
    points = (([f"--config={c}", f"--size={s}", f"--batch={b}", f"--precision={p}",
                f"--format={f}", f"--ngf={args.ngf}", f"--steps={args.steps}",
                f"--warmup={args.warmup}", f"--device={args.device}",
                *(["--compile"] if args.compile else [])],
               f"{c} {s}px b{b} {p} {f}")
              for c, s, b, p, f in itertools.product(args.configs, args.sizes, args.batches,
                                                     precisions, args.formats))
    collect(points, functools.partial(row, ceilings=ceilings), HEAD, args.json)


HEAD = ("| config | px | batch | precision | format | s/step | img/s | peak GB | TFLOP/s "
        "| of matmul, same precision |\n|---|---|---|---|---|---|---|---|---|---|")


def row(r: dict, ceilings: dict[str, float]) -> str:
    return (f"| {r['config']} | {r['size']} | {r['batch']} | {r['precision']} | {r['format']} "
            f"| {r['step_s']:.3f} | {r['img_per_s']:.2f} | {r['peak_gb']:.2f} "
            f"| {r['tflops']:.3f} | {r['tflops'] / ceilings[r['precision']]:.1%} |")


if __name__ == "__main__":
    main()
