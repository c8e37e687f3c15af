"""`liss data depth ROOT --model FILE`: the missing depth maps of a dataset, from a monocular
depth model the user supplies (see `liss.data.depth_model`).

Encoding (what the depth task reads, `liss.tasks.depth`): the stored x in [0, 1] is inverse
depth normalised so that the nearest point is about 1 — the synthetic data's z_near / z.
Per image, the model's inverse depth (or 1 / depth for `output="depth"`, non-positive depth
counting as infinitely far) is divided by its `percentile`-th percentile at the model's
resolution (a high percentile rather than the maximum, so a few outlier pixels do not darken
the whole map; before the resize, so the scale does not depend on the image's size), resized
back to the image's size (bilinear), clipped to [1/65535, 1] and written as a 16-bit
grayscale PNG.

Resumable and atomic: a map that exists and decodes is kept (unless `overwrite`); a map is
written to a temporary file in its `depths/` folder and renamed into place, so an interrupted
run leaves complete maps and, at worst, temporary files that the next run deletes. An image
that cannot be read is reported and skipped; the others are still computed.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from liss.config import ConfigError
from liss.data import DEPTH_OUTPUTS, IMAGENET_MEAN, IMAGENET_STD
from liss.data.check import probe_image
from liss.data.depth_model import DepthModel, DepthModelError
from liss.data.images import BadImageError, Failures, failure_reason, read_image
from liss.data.layout import DOMAINS, depth_path, list_images
from liss.data.prefetch import prefetch

SPLIT_FOLDERS = ("trainA", "trainB", "valA", "valB", "testA", "testB")
DEFAULT_INPUT_SIZE = 384  # MiDaS / DPT sizes are multiples of 32
FLOOR = 1 / 65535  # the farthest value a 16-bit map holds
TMP_SUFFIX = ".liss-tmp"  # `.<stem>.png.<random>.liss-tmp` while a map is being written
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """How images are fed to the model and how its output is stored."""

    input_size: int | None = None  # square side fed to the model (None: its fixed size or 384)
    mean: tuple[float, ...] = IMAGENET_MEAN  # the model sees (rgb in [0, 1] - mean) / std
    std: tuple[float, ...] = IMAGENET_STD
    output: str = "inverse-depth"  # what the model returns: inverse-depth | depth
    percentile: float = 99.0  # the inverse depth stored as 1
    batch_size: int = 4
    splits: tuple[str, ...] = ()  # split folders (trainA ...) or splits (train ...); (): all
    overwrite: bool = False  # recompute maps that exist
    workers: int = 2  # decode and encode threads

    def validate(self) -> None:
        if self.input_size is not None and self.input_size < 1:
            raise ConfigError("--input-size", self.input_size, "must be >= 1")
        if len(self.mean) != 3:
            raise ConfigError("--mean", list(self.mean), "three numbers (R G B)")
        if len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("--std", list(self.std), "three positive numbers (R G B)")
        if self.output not in DEPTH_OUTPUTS:
            raise ConfigError("--output", self.output, f"one of {', '.join(DEPTH_OUTPUTS)}")
        if not 0 < self.percentile <= 100:
            raise ConfigError("--percentile", self.percentile, "must be in (0, 100]")
        if self.batch_size < 1:
            raise ConfigError("--batch-size", self.batch_size, "must be >= 1")
        if self.workers < 1:
            raise ConfigError("workers", self.workers, "must be >= 1")


@dataclass
class DepthSummary:
    """What a run did, for the CLI to print; `failed` holds (image, reason)."""

    root: Path
    folders: list[str]
    model: str
    input_size: int
    batch_size: int
    computed: int = 0
    kept: int = 0
    replaced: int = 0  # of the computed: existing maps that did not decode
    removed_temporaries: int = 0
    failed: Failures = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        line = (f"depth maps in {self.root} ({', '.join(self.folders)}): computed "
                f"{self.computed}, kept {self.kept} existing, failed {len(self.failed)}")
        if self.replaced:
            line += f" ({self.replaced} computed in place of undecodable maps)"
        if self.removed_temporaries:
            n = self.removed_temporaries
            line += f"; removed {n} temporary file{'s' * (n != 1)} of an interrupted run"
        how = (f"{self.model}, input {self.input_size}x{self.input_size}, batch "
               f"{self.batch_size}, {self.seconds:.1f} s")
        if self.computed:
            how += f" ({self.computed / max(self.seconds, 1e-9):.2f} images/s)"
        return f"{line}\n  {how}"


# ---------------------------------------------------------------------- what to compute


def split_folders(root: Path, splits: Iterable[str] = ()) -> list[Path]:
    """The split folders to fill: those named (`trainA`, or `train` for both domains), or
    every one of SPLIT_FOLDERS that exists."""
    if not root.is_dir():
        raise ConfigError("ROOT", str(root), "no such dataset folder")
    names: list[str] = []
    for split in splits:
        if split in SPLIT_FOLDERS:
            if not (root / split).is_dir():
                raise ConfigError("--splits", split, f"no folder {root / split}")
            names.append(split)
        elif split in ("train", "val", "test"):
            found = [f"{split}{d}" for d in DOMAINS if (root / f"{split}{d}").is_dir()]
            if not found:
                raise ConfigError("--splits", split, f"no {split}A or {split}B folder in {root}")
            names += found
        else:
            raise ConfigError("--splits", split, f"one of {', '.join(SPLIT_FOLDERS)} or "
                              "train, val, test")
    if not names:
        names = [n for n in SPLIT_FOLDERS if (root / n).is_dir()]
        if not names:
            raise ConfigError("ROOT", str(root), f"no split folder ({', '.join(SPLIT_FOLDERS)})")
    return [root / n for n in dict.fromkeys(names)]


@dataclass(frozen=True)
class Plan:
    todo: list[Path]  # images whose map is computed
    kept: int
    replaced: int  # of todo: maps that exist but do not decode


def plan(folders: list[Path], overwrite: bool, pool: ThreadPoolExecutor) -> Plan:
    """Which images need a map: all with `overwrite`, else those without a decodable one."""
    images = [image for folder in folders for image in list_images(folder)]
    if overwrite:
        return Plan(images, 0, 0)
    existing = [image for image in images if depth_path(image).is_file()]
    reasons = dict(zip(existing, pool.map(lambda i: probe_image(depth_path(i)), existing),
                       strict=True))
    todo = [image for image in images if reasons.get(image, "missing") is not None]
    kept = sum(reason is None for reason in reasons.values())
    return Plan(todo, kept, len(existing) - kept)


def remove_temporaries(folders: list[Path]) -> int:
    """Delete the temporary files a killed run left in `depths/`; how many there were."""
    stale = [p for folder in folders for p in (folder / "depths").glob(f".*{TMP_SUFFIX}")]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def fit_model(opts: Options, model: DepthModel) -> tuple[int, int]:
    """(input side, batch size) for `model`: an ONNX file with static dimensions sets them."""
    size = opts.input_size or DEFAULT_INPUT_SIZE
    if model.fixed_size is not None:
        h, w = model.fixed_size
        if h != w:
            raise DepthModelError(f"{model.path}: takes {h}x{w} inputs only; liss feeds square "
                                  "inputs: export it with a square or dynamic size")
        if opts.input_size not in (None, h):
            raise ConfigError("--input-size", opts.input_size,
                              f"{model.path} takes {h}x{h} inputs only")
        size = h
    batch = opts.batch_size
    if model.fixed_batch is not None:
        if model.fixed_batch != 1:
            raise DepthModelError(f"{model.path}: has a fixed batch of {model.fixed_batch}; "
                                  "export it with batch 1 or a dynamic batch dimension")
        batch = 1
    return size, batch


# ---------------------------------------------------------------------- one map


def load_input(image: Path, size: int) -> tuple[tuple[int, int], Tensor]:
    """(the image's (H, W), [3,size,size] RGB in [0, 1]); bicubic, antialiased, squashed to a
    square so images of any size batch together (the map is stretched back)."""
    rgb = read_image(image)
    hw = (int(rgb.shape[-2]), int(rgb.shape[-1]))
    if hw != (size, size):
        rgb = F.interpolate(rgb[None], size=(size, size), mode="bicubic", antialias=True,
                            align_corners=False)[0].clamp_(0, 1)
    return hw, rgb


def normalise(pred: np.ndarray, output: str, percentile: float) -> np.ndarray:
    """The model's output as inverse depth over its `percentile`-th percentile (float32, not
    clipped); ValueError when the output holds no usable inverse depth."""
    pred = pred.astype(np.float64)
    bad = int((~np.isfinite(pred)).sum())
    if bad:
        raise ValueError(f"{bad} non-finite values")
    inv = pred if output == "inverse-depth" else np.divide(
        1.0, pred, out=np.zeros_like(pred), where=pred > 0)
    ref = float(np.percentile(inv, percentile))
    if ref <= 0:
        raise ValueError(f"no positive inverse depth (its {percentile:g}th percentile is "
                         f"{ref:.3g})")
    return (inv / ref).astype(np.float32)


def quantise(x: np.ndarray) -> np.ndarray:
    """Normalised inverse depth -> the uint16 values of the PNG, clipped to [1/65535, 1]."""
    return np.round(np.clip(x, FLOOR, 1.0) * 65535).astype(np.uint16)


def save_png(values: np.ndarray, target: Path) -> None:
    """A 16-bit grayscale PNG at `target` (no rename: see `write_map`)."""
    with open(target, "xb") as f:  # "x": never into another writer's file
        Image.fromarray(values).save(f, format="PNG")


def write_map(path: Path, values: np.ndarray) -> None:
    """Write `path` whole or not at all: a temporary file beside it, renamed into place."""
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        save_png(values, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finish_map(image: Path, pred: Tensor, hw: tuple[int, int], opts: Options) -> None:
    """Normalise one prediction [H',W'], resize it to the image, quantise and write it;
    BadImageError naming the image when the output is unusable or the file cannot be
    written."""
    try:
        x = normalise(pred.cpu().numpy(), opts.output, opts.percentile)
    except ValueError as e:
        raise BadImageError(image, f"unusable model output: {e}") from None
    resized = F.interpolate(torch.from_numpy(x)[None, None], size=hw, mode="bilinear",
                            align_corners=False, antialias=True)[0, 0]
    values = quantise(resized.numpy())
    target = depth_path(image)
    try:
        write_map(target, values)
    except OSError as e:
        raise BadImageError(image, f"cannot write {target}: {e.strerror or e}") from None


# ---------------------------------------------------------------------- the run


class Progress:
    """`done/total` on stderr: redrawn in place on a terminal, else a line at every 10 %."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled = total, enabled and total > 0
        self.tty = sys.stderr.isatty()
        self.start = self._drawn = time.monotonic()
        self._tenths = self._width = 0

    def update(self, done: int, failed: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        line = (f"depth maps {done}/{self.total}, {failed} failed, "
                f"{done / max(now - self.start, 1e-9):.1f} images/s")
        if self.tty:
            if now - self._drawn >= 0.25 or done == self.total:
                self._drawn, self._width = now, max(self._width, len(line))
                sys.stderr.write(f"\r{line.ljust(self._width)}")
                sys.stderr.flush()
        elif 10 * done // self.total > self._tenths:
            self._tenths = 10 * done // self.total
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _chunks(items: Iterable[T], n: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Writes:
    """The maps being encoded and written in the pool, settled in order into the summary."""

    def __init__(self, summary: DepthSummary):
        self.summary = summary
        self.pending: deque[tuple[Path, Future[None]]] = deque()

    def add(self, image: Path, future: Future[None]) -> None:
        self.pending.append((image, future))

    def settle(self, keep: int) -> None:
        """Collect finished writes; wait for the oldest while more than `keep` are pending."""
        while self.pending and (len(self.pending) > keep or self.pending[0][1].done()):
            image, future = self.pending.popleft()
            try:
                future.result()
                self.summary.computed += 1
            except BadImageError as e:
                self.summary.failed.append((image, e.reason))


def compute_depth_maps(root: Path, model: DepthModel, opts: Options | None = None, *,
                       progress: bool = True) -> DepthSummary:
    """Write the missing depth maps under `root` (all of them with `opts.overwrite`)."""
    opts = opts or Options()
    opts.validate()
    root = Path(root)
    folders = split_folders(root, opts.splits)
    size, batch = fit_model(opts, model)
    summary = DepthSummary(root, [f.name for f in folders], f"{model.kind} on {model.where}",
                           size, batch)
    start = time.perf_counter()
    summary.removed_temporaries = remove_temporaries(folders)
    mean = torch.tensor(opts.mean, device=model.device).view(1, 3, 1, 1)
    std = torch.tensor(opts.std, device=model.device).view(1, 3, 1, 1)
    readers, writers = ThreadPoolExecutor(opts.workers), ThreadPoolExecutor(opts.workers)
    try:
        work = plan(folders, opts.overwrite, readers)
        summary.kept, summary.replaced = work.kept, work.replaced
        bar, writes = Progress(len(work.todo), progress), _Writes(summary)
        decoded = prefetch(lambda p: load_input(p, size), work.todo, readers, depth=2 * batch)
        for chunk in _chunks(decoded, batch):
            good = []
            for image, future in chunk:
                try:
                    good.append((image, *future.result()))
                except BadImageError as e:
                    summary.failed.append((image, failure_reason(image, e)))
            if good:
                x = torch.stack([rgb for _, _, rgb in good]).to(model.device)
                pred = model((x - mean) / std)
                for (image, hw, _), one in zip(good, pred, strict=True):
                    writes.add(image, writers.submit(finish_map, image, one, hw, opts))
            writes.settle(keep=2 * batch)
            bar.update(summary.computed + len(summary.failed), len(summary.failed))
        writes.settle(keep=0)
        bar.update(summary.computed + len(summary.failed), len(summary.failed))
        bar.close()
    finally:  # on an error, the maps already predicted are still written (whole)
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
    summary.seconds = time.perf_counter() - start
    return summary
