"""The README's translation figure, regenerated from a finished run:

    python -m liss.eval.showcase RUN_DIR --out docs/img/

writes `translations.png`: test images of the run's dataset translated by its trained
generators, each beside its paired truth: input A | A->B | truth, input B | B->A | truth.
Images are shown at the scale the run trained on (resized to `data.load_size` under
`resize_and_crop`; whole, uncropped), then enlarged without interpolation.
The generators come from `generators.pt` (else the newest checkpoint); the data from the
run's `data.root` unless `--data` says otherwise. (The README's forgetting figure is
`liss sweep report`'s, over seeds: docs/evaluation.md.)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from liss import config as config_lib
from liss.config import ConfigError
from liss.data.layout import list_images
from liss.eval import tiling
from liss.eval.generators import DIRECTIONS, LoadError, load_translator
from liss.eval.translate import load_input, to_uint8

GAP, HEADER = 6, 18
MIN_CELL = 128  # pixels


def _generators_file(run_dir: Path) -> Path:
    for path in (run_dir / "generators.pt", run_dir / "checkpoints" / "latest.pt"):
        if path.is_file():
            return path
    raise LoadError(f"{run_dir}: no generators.pt or checkpoints/latest.pt (is it a run folder "
                    "of a finished run?)")


def _samples(root: Path, n: int) -> dict[str, list[tuple[Path, Path]]]:
    """Up to n (test image, truth) pairs per dataset direction."""
    out = {}
    for direction in DIRECTIONS:
        src, dst = direction[0], direction[-1]
        truth = {p.stem: p for p in list_images(root / "gt" / f"test{src}2{dst}")}
        pairs = [(p, truth[p.stem]) for p in list_images(root / f"test{src}") if p.stem in truth]
        if not pairs:
            raise LoadError(f"{root}: no test{src} images with truth in gt/test{src}2{dst}")
        out[direction] = pairs[:n]
    return out


def translation_grid(run_dir: Path, root: Path | None, n: int, out: Path) -> Path:
    """`out`: one row per sample, input | translation | truth for both directions."""
    cfg = config_lib.load(run_dir / "config.yaml")
    root = root or Path(cfg.data.root)
    translator = load_translator(_generators_file(run_dir), DIRECTIONS, torch.device("cpu"))
    samples = _samples(root, n)
    size = cfg.data.load_size if cfg.data.preprocess == "resize_and_crop" else None
    rows = []
    for i in range(min(len(p) for p in samples.values())):
        cells = []
        for direction in DIRECTIONS:
            image_path, truth_path = samples[direction][i]
            x = load_input(image_path, size)[None]
            y = tiling.run(translator.nets[direction], x)[0]
            truth = load_input(truth_path, size)
            cells += [to_uint8(x[0]), to_uint8(y), to_uint8(truth)]
        rows.append(cells)
    headers = ["A", "A -> B", "truth", "B", "B -> A", "truth"]
    scale = -(-MIN_CELL // rows[0][0].shape[0])  # small images: enlarged, pixels kept
    rows = [[c.repeat(scale, 0).repeat(scale, 1) for c in cells] for cells in rows]
    h, w = rows[0][0].shape[:2]
    canvas = Image.new("RGB", (6 * w + 5 * GAP + 2 * GAP, HEADER + len(rows) * (h + GAP)),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(headers):
        x0 = c * (w + GAP) + (2 * GAP if c >= 3 else 0)
        draw.text((x0 + 4, 3), text, fill="black")
        for r, cells in enumerate(rows):
            canvas.paste(Image.fromarray(np.ascontiguousarray(cells[c])),
                         (x0, HEADER + r * (h + GAP)))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m liss.eval.showcase", description=__doc__)
    p.add_argument("run", help="a finished run's folder")
    p.add_argument("--out", default="docs/img", help="output folder")
    p.add_argument("--data", help="dataset root (default: the first run's data.root)")
    p.add_argument("-n", type=int, default=4, help="test images per direction")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        grid = translation_grid(Path(args.run), Path(args.data) if args.data else None,
                                args.n, out / "translations.png")
        print(f"wrote {grid}")
    except (LoadError, ConfigError) as e:
        print(f"liss: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
