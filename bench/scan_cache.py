"""The start-up scan with and without its cache: first start vs restart on many small images.

    python bench/scan_cache.py                  # 20,000 images (10,000 per domain), 64x48 JPEG
    python bench/scan_cache.py --n 2000 --rounds 1

Times `build_pipeline` (list the folders, choose the tasks, scan, carve validation) on a fresh
dataset in a temporary folder: the first start decodes every image and writes the cache
(`data.scan_cache`), each restart finds every file unchanged; `scan_cache=none` decodes
every time (the behaviour before the cache). No depth maps, so `auto` trains without depth
and only the images are scanned. Rounds alternate the three so a busy machine slows all alike:
compare ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from liss import config
from liss.data.pipeline import build_pipeline


def make_dataset(root: Path, n: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    per_domain = {"trainA": n // 2, "trainB": n - n // 2, "testA": 1, "testB": 1}
    for folder, count in per_domain.items():
        (root / folder).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{i:06d}.jpg", quality=90)


def start(root: Path, runs: Path, cache: str) -> float:
    cfg = config.load(None, [f"data.root={root}", f"run.dir={runs}", f"data.scan_cache={cache}",
                             "train.device=cpu", "data.backend=torch"])
    t0 = time.perf_counter()
    build_pipeline(cfg)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000, help="train images, both domains together")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=48)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, t0 = Path(tmp) / "ds", time.perf_counter()
        make_dataset(root, args.n, args.width, args.height)
        print(f"{args.n} images of {args.width}x{args.height} written in "
              f"{time.perf_counter() - t0:.0f} s; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs")
        times: dict[str, list[float]] = {"first start": [], "restart": [], "no cache": []}
        for r in range(args.rounds):
            runs = Path(tmp) / f"runs{r}"
            times["first start"].append(start(root, runs, "auto"))
            times["restart"].append(start(root, runs, "auto"))
            times["no cache"].append(start(root, runs, "none"))
    first = statistics.median(times["first start"])
    print(f"{'':12} {'median s':>9} {'vs first start':>15}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:12} {median:9.2f} {median / first:15.3f}")


if __name__ == "__main__":
    main()
