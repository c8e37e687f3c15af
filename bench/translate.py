"""Translate throughput: images/s of `liss translate`'s network path (pad to the stride, tile,
blend) for several image sizes, with and without tiling.

Every configuration runs in its own process (a clean peak-memory reading) on one image held
in memory, so the numbers are the network and tiling alone (no decoding or encoding). The
generator is the paper's (ngf 64, 3 + 3 ResNet blocks), randomly initialised unless
`--checkpoint` gives trained weights; with trained weights the tiled rows also report how
far the tiled output is from the untiled one (on `--image`, resized to each size).

    python bench/translate.py                                   # the CPU set
    python bench/translate.py --device cuda --sizes 512 1024 2048 4096 --tile 1024
    python bench/translate.py --checkpoint runs/quickstart/generators.pt \
        --image data/synth/testA/00000.jpg --sizes 256 512 --tile 128

Prints a markdown table; `--json OUT` also writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

from isolated import collect


def _image(size: int, path: str | None = None):
    """The test picture at size x size in [-1, 1]: `path` resized, or upsampled noise."""
    import torch
    from torch.nn import functional as F

    if path:
        from liss.eval.translate import load_input

        coarse = load_input(Path(path), None)[None]
    else:
        coarse = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bicubic").clamp(-1, 1)


def _network(args: argparse.Namespace):
    import torch

    from liss import config
    from liss.eval.generators import build_translation_net, load_translator

    device = torch.device(args.device)
    if args.checkpoint:
        return load_translator(Path(args.checkpoint), ["AtoB"], device).nets["AtoB"]
    cfg = config.load(None, [f"model.ngf={args.ngf}"])
    return build_translation_net(cfg).to(device).eval()


def measure(args: argparse.Namespace) -> dict:
    """One configuration, in this process."""
    import torch

    from liss.eval import tiling

    torch.manual_seed(0)
    device = torch.device(args.device)
    net = _network(args)
    x = _image(args.size, args.image).to(device).expand(args.batch, -1, -1, -1).contiguous()

    def run(tile: int):
        y = tiling.run(net, x, tile=tile, overlap=args.overlap, batch_size=args.tile_batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return y

    tiling.run(net, _image(64).to(device))  # warm-up on a small image
    times, y = [], None
    for _ in range(args.repeat):
        start = time.perf_counter()
        y = run(args.tile_px)
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    diff = None
    if args.checkpoint and args.tile_px:
        full = run(0)
        diff = {"mean": float((y - full).abs().mean()), "max": float((y - full).abs().max())}
    seconds = statistics.median(times)
    return {"size": args.size, "batch": args.batch, "tile": args.tile_px,
            "overlap": args.overlap if args.tile_px else 0, "s_per_batch": seconds,
            "img_per_s": args.batch / seconds, "peak_gb": peak / 2**30, "diff": diff,
            "device": str(device), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--tile", type=int, default=256, help="tile size of the tiled rows")
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tile-batch", type=int, default=1,
                   help="tiles per forward pass (an image fitting that many tiles runs whole)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--checkpoint", help="trained generators (default: random weights)")
    p.add_argument("--image", help="the picture to translate, resized (default: smooth noise)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--tile-px", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args)))
        return

    extra = [*(["--checkpoint", args.checkpoint] if args.checkpoint else []),
             *(["--image", args.image] if args.image else [])]
    points = (([f"--size={size}", f"--tile-px={tile}", f"--overlap={args.overlap}",
                f"--batch={args.batch}", f"--tile-batch={args.tile_batch}",
                f"--repeat={args.repeat}", f"--ngf={args.ngf}", f"--device={args.device}",
                *extra], f"{size}px tile {tile}")
              for size in args.sizes
              for tile in ((0, args.tile) if size > args.tile else (0,)))
    collect(points, row, HEAD, args.json)


HEAD = ("| px | batch | tiles | s/batch | img/s | peak GB | tiled vs untiled mean / max |\n"
        "|---:|---:|---|---:|---:|---:|---|")


def row(r: dict) -> str:
    tiling = f"{r['tile']} (overlap {r['overlap']})" if r["tile"] else "none"
    diff = f"{r['diff']['mean']:.4f} / {r['diff']['max']:.3f}" if r["diff"] else "-"
    return (f"| {r['size']} | {r['batch']} | {tiling} | {r['s_per_batch']:.2f} "
            f"| {r['img_per_s']:.3f} | {r['peak_gb']:.2f} | {diff} |")


if __name__ == "__main__":
    main()
