"""Input pipeline throughput, torch vs DALI, and the trainer's data-wait fraction.

    python bench/data_pipeline.py                     # the throughput table
    python bench/data_pipeline.py --train-steps 9     # also a short `liss train` per backend

Throughput: 400x300 JPEGs generated in a temporary folder, resized to 286 and cropped to
256 (the paper's sizes), no depth; images/s counts both domains (a local batch of b gives
2b images). torch runs b samples per DataLoader batch in 1 or 2 worker processes; DALI
runs its pipeline with 1 or 2 threads. Each cell alternates the two backends `--rounds`
times and reports the median, so a busy machine slows both alike: compare ratios.

Data wait: `liss train` (narrow nets, rotation task, batch 8, 2 workers/threads) with each
backend, at 256 px crops and at 64 px crops (a step short enough for loading to show);
`perf/data_wait_frac` is the trainer's own share of wall time spent in next(batch), kept from
what the trainer logs with tracking off (so neither this nor the GPU suite needs MLflow).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

from liss import config
from liss.data.pipeline import build_pipeline

WIDTH, HEIGHT, LOAD, CROP = 400, 300, 286, 256


def make_dataset(root: Path, n: int, seed: int = 0) -> Path:
    """n textured 400x300 JPEGs per train domain, 2 per val domain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    for folder, count in (("trainA", n), ("trainB", n), ("valA", 2), ("valB", 2)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            f = rng.uniform(0.02, 0.2, 3)
            rgb = np.stack([np.sin(xx * f[0] + i), np.cos(yy * f[1]), np.sin((xx + yy) * f[2])])
            noise = rng.normal(0, 0.15, (3, HEIGHT, WIDTH))
            pixels = ((rgb + noise) * 60 + 128).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
            Image.fromarray(pixels).save(root / folder / f"{i:04d}.jpg", quality=90)
    return root


def overrides(root: Path, backend: str, batch: int, workers: int, load: int = LOAD,
              crop: int = CROP, device: str = "cpu") -> list[str]:
    """`device` cuda: DALI decodes with nvJPEG (`mixed`) and resizes on the GPU."""
    return [f"data.root={root}", f"data.backend={backend}", f"data.batch_size={batch}",
            f"data.num_workers={workers}", f"data.load_size={load}", f"data.crop_size={crop}",
            "tasks.auxiliary_tasks=rotation", f"train.device={device}"]


def throughput(root: Path, backend: str, batch: int, workers: int, seconds: float,
               device: str = "cpu") -> float:
    """Images/s (both domains) after two warm-up batches, over at least `seconds`."""
    data = build_pipeline(config.load(None, overrides(root, backend, batch, workers,
                                                      device=device)))
    batches = data.train_batches()
    for _ in range(2):
        next(batches)
    n, start = 0, time.perf_counter()
    while n < 4 or time.perf_counter() - start < seconds:
        next(batches)
        n += 1
    return 2 * batch * n / (time.perf_counter() - start)


def table(root: Path, seconds: float, rounds: int) -> str:
    rows = ["| batch | workers/threads | torch img/s | dali img/s | dali / torch |",
            "|---:|---:|---:|---:|---:|"]
    for batch, workers in itertools.product((1, 8, 32), (1, 2)):
        runs: dict[str, list[float]] = {"torch": [], "dali": []}
        for _ in range(rounds):
            for backend, found in runs.items():
                found.append(throughput(root, backend, batch, workers, seconds))
        torch_ips, dali_ips = (statistics.median(runs[b]) for b in ("torch", "dali"))
        rows.append(f"| {batch} | {workers} | {torch_ips:.0f} | {dali_ips:.0f} | "
                    f"{dali_ips / torch_ips:.2f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


def logged_training(args: list[str]) -> dict[str, list[float]]:
    """`liss train` with `args` in this process, tracking off, and every metric the trainer
    would have logged, in order (the no-op tracker's `log_metrics`, recorded)."""
    from liss import tracking
    from liss.train.trainer import train

    logged: dict[str, list[float]] = defaultdict(list)

    def keep(_tracker: tracking.Tracker, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            logged[k].append(float(v))

    cfg = config.load(None, [*args, "tracking.uri=none", "tracking.log_system_metrics=false",
                             "train.progress=false", "optim.name=radam"])
    with mock.patch.object(tracking.Tracker, "log_metrics", keep), \
            contextlib.redirect_stdout(sys.stderr):
        if (code := train(cfg)) != 0:
            raise RuntimeError(f"liss train exited {code}")
    return logged


def wait_run(root: Path, runs: Path, backend: str, steps: int, log_every: int, batch: int,
             workers: int, load: int, crop: int, device: str, extra: list[str]) -> dict:
    """A `steps`-step training's data-wait fraction: the mean over the log intervals after
    the first (which includes the loader's start-up), and that first one."""
    name = f"wait-{backend}-{crop}"
    logged = logged_training([
        *overrides(root, backend, batch, workers, load, crop, device), f"run.dir={runs}",
        f"run.name={name}", f"train.max_steps={steps}", f"train.log_every={log_every}",
        "train.val_every=100000", *extra])
    wait, ips = logged["perf/data_wait_frac"], logged["perf/img_per_s"]
    return {"backend": backend, "crop": crop, "batch": batch, "workers": workers,
            "steps": steps, "wait_frac": float(np.mean(wait[1:] or wait)),
            "wait_frac_first": wait[0], "img_per_s": float(np.mean(ips[1:] or ips))}


def data_wait(root: Path, runs: Path, steps: int) -> str:
    """`liss train` per backend and crop size (narrow nets, fp32, on the CPU)."""
    rows = ["| crop | backend | steps | data-wait fraction (first interval) | train img/s |",
            "|---:|---|---:|---:|---:|"]
    for (load, crop), backend in itertools.product(((LOAD, CROP), (72, 64)), ("torch", "dali")):
        r = wait_run(root, runs, backend, steps, max(1, steps // 3), 8, 2, load, crop, "cpu",
                     ["train.precision=fp32", "model.ngf=8", "model.ndf=8", "loss.pool_size=0"])
        rows.append(f"| {crop} | {backend} | {steps} | {r['wait_frac']:.4f} "
                    f"({r['wait_frac_first']:.4f}) | {r['img_per_s']:.2f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), platform.processor() or "CPU")


def machine() -> str:
    import nvidia.dali
    import PIL
    import torch

    return (f"{time.strftime('%Y-%m-%d')}; {cpu_name()}, {os.cpu_count()} cores; Python "
            f"{platform.python_version()}, torch {torch.__version__}, DALI "
            f"{nvidia.dali.__version__}, Pillow {PIL.__version__}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64, help="JPEGs per train domain")
    p.add_argument("--seconds", type=float, default=2.0, help="measuring time per run")
    p.add_argument("--rounds", type=int, default=3, help="runs per backend and cell (median)")
    p.add_argument("--train-steps", type=int, default=0,
                   help="also run `liss train` per backend for this many steps")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "jpegs", args.images)
        print(machine() + "\n")
        print(table(root, args.seconds, args.rounds))
        if args.train_steps:
            print()
            print(data_wait(root, Path(tmp) / "runs", args.train_steps))


if __name__ == "__main__":
    main()
