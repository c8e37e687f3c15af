"""The trainer's view of the data: a resumable train stream and per-domain validation sets,
behind one contract whatever the backend (`data.backend`).

Before training: the split folders are listed, the auxiliary tasks chosen
(`task_choice.choose_tasks`: `auto` adds depth only when every map is there), and every image
(and depth map, when the depth task is on) decoded once (`check.unusable_images`, a thread
pool; sharded across ranks and gathered, so every rank holds the same file lists and the sample
stream stays identical on all of them). Verdicts are remembered per file (`scan_cache`): a
restart decodes only what changed. With `data.on_bad_file=error` the first unusable file stops
the run here, with its path and reason; with `skip` those files leave the split lists and are
listed in `skipped_files`. Only then is validation carved from train, so skipped files cannot
empty it. A file that breaks later is substituted by the next readable one (`skip`) or raises
BadImageError (`error`) from the batch iterator; substitutions are added to `skipped_files` too.

Under `data.preprocess=none` images keep their size (cropped to a multiple of the generator's
stride), so sizes can differ between files. Their headers are read at start-up
(`output_shapes`): a training batch of more than one image per rank needs every train image
of a domain to come out the same size, else the run stops here naming two that do not;
validation batches group images of equal size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch.distributed as dist

from liss.config import Config, ConfigError, check_per_rank_batch, with_tasks
from liss.data.augment import Preprocess, Size
from liss.data.batch import Batch, DomainBatch, by_shape
from liss.data.check import unusable_images
from liss.data.images import BadImageError, Failures, image_size
from liss.data.layout import DOMAINS, Split, carve_validation, list_splits
from liss.data.sampler import StreamSampler
from liss.data.scan_cache import ScanCache, cache_path
from liss.data.task_choice import TaskChoice, choose_tasks
from liss.taskspec import needs_depth

log = logging.getLogger(__name__)
VAL_KEY_SALT = 0x5EED_7A1  # validation keys are fixed, so jigsaw puzzles never change
SPLITS = ("train", "val", "test")
T = TypeVar("T")


def resolve_backend(name: str, train_device: str = "auto") -> str:
    """`auto`: dali when training on CUDA and DALI works there, else torch. On a CPU, torch
    is the faster of the two (DALI's CPU resampling costs about twice torch's per image,
    docs/benchmarks.md), so `auto` does not even import DALI there. `dali` that cannot run
    is a ConfigError naming the fix."""
    if name == "torch":
        return "torch"
    from liss.data import dali_backend

    device = dali_backend.device_id(train_device)
    if name == "auto" and device is None:
        return "torch"
    reason = dali_backend.unavailable_reason(device)
    if reason is None:
        return "dali"
    if name == "dali":
        raise ConfigError("data.backend", name, reason)
    log.warning("data.backend=auto: using torch, because %s", reason)
    return "torch"


@dataclass
class InputPipeline:
    cfg: Config
    splits: dict[str, Split]
    backend: str
    rank: int
    world_size: int
    with_depth: bool
    pin_memory: bool
    skip_bad: bool = False
    # split -> [(image, reason)]: dropped by the start-up scan, then substituted mid-run
    skipped_files: dict[str, Failures] = field(
        default_factory=lambda: {s: [] for s in SPLITS})
    tasks: TaskChoice | None = None  # what build_pipeline chose (cfg trains exactly these)
    # image -> (h, w) it comes out as, when that differs between files (preprocess=none)
    shapes: dict[Path, Size] = field(default_factory=dict)

    @property
    def prep(self) -> Preprocess:
        return Preprocess.of(self.cfg.data)

    @property
    def local_batch(self) -> int:
        return self.cfg.data.batch_size // self.world_size

    @property
    def epoch_length(self) -> int:
        return max(len(self.splits["train"].A), len(self.splits["train"].B))

    @property
    def skipped_count(self) -> int:
        """How many files this rank has skipped so far (for the trainer to log)."""
        return sum(len(v) for v in self.skipped_files.values())

    def sampler(self, start_step: int = 0) -> StreamSampler:
        train = self.splits["train"]
        return StreamSampler(len(train.A), len(train.B), seed=self.cfg.run.seed,
                             local_batch=self.local_batch, rank=self.rank,
                             world_size=self.world_size, start_step=start_step)

    def record(self, split: str, failures: Failures) -> None:
        """Note files that failed mid-run (once each), with a warning."""
        seen = {path for path, _ in self.skipped_files[split]}
        for path, reason in failures:
            if path not in seen:
                seen.add(path)
                self.skipped_files[split].append((path, reason))
                log.warning("%s: %s; substituted by the next readable %s image", path, reason,
                            split)

    def _recorded(self, split: str, loader: Iterable[tuple[T, Failures]]) -> Iterator[T]:
        for item, failures in loader:
            if failures:
                self.record(split, failures)
            yield item

    def train_batches(self, start_step: int = 0) -> Iterator[Batch]:
        """This rank's local batches from `start_step` on (endless)."""
        d = self.cfg.data
        train = self.splits["train"]
        common = dict(prep=self.prep, flip=not d.no_flip, with_depth=self.with_depth,
                      skip_bad=self.skip_bad)
        if self.backend == "dali":
            from liss.data import dali_backend

            return dali_backend.TrainStream(
                {"A": train.A, "B": train.B}, self.sampler, start_step, **common,
                threads=d.num_workers, device=dali_backend.device_id(self.cfg.train.device),
                record=partial(self.record, "train"))
        from liss.data.torch_backend import TrainDataset, train_loader

        loader = train_loader(TrainDataset(train.A, train.B, **common),
                              self.sampler(start_step), num_workers=d.num_workers,
                              pin_memory=self.pin_memory)
        return self._recorded("train", loader)

    def eval_batches(self, split: str, domain: str, batch_size: int | None = None
                     ) -> Iterator[DomainBatch]:
        """This rank's shard (every world_size-th image) of one domain, centre-cropped; with
        sizes that differ (`shapes`), each batch holds images of one size.

        Decoded by the torch path whatever `data.backend` is: validation drives the schedule,
        so it is bit-identical across backends, and it is small next to training.
        """
        from liss.data.torch_backend import EvalDataset, eval_loader

        d = self.cfg.data
        files = self.splits[split][domain]
        indices = list(range(self.rank, len(files), self.world_size))
        dataset = EvalDataset(files, prep=self.prep, with_depth=self.with_depth,
                              key_salt=VAL_KEY_SALT + ord(domain), indices=indices,
                              skip_bad=self.skip_bad)
        shapes = [self.shapes.get(files[i]) for i in indices] if self.shapes else None
        return self._recorded(split, eval_loader(
            dataset, batch_size=batch_size or max(1, self.local_batch),
            num_workers=min(d.num_workers, 2), shapes=shapes))


def _scan(splits: dict[str, Split], with_depth: bool, cache: ScanCache, rank: int,
          world_size: int) -> dict[Path, str]:
    """{image: reason} over every split; each rank decodes its share of what the cache does
    not know, then all gather (verdicts and new cache entries); rank 0 writes the cache."""
    # any order every rank agrees on shards the work; strings sort far faster than Paths
    files = sorted({f for split in splits.values() for dom in DOMAINS for f in split[dom]},
                   key=str)
    shard = world_size > 1 and dist.is_available() and dist.is_initialized()
    start = time.monotonic()
    found = unusable_images(files[rank::world_size] if shard else files,
                            require_depth=with_depth, probe=cache.probe)
    hits, decoded = cache.hits, len(cache.fresh)
    if shard:
        gathered: list[tuple[dict[Path, str], dict, int]] = [({}, {}, 0)] * world_size
        dist.all_gather_object(gathered, (found, cache.fresh, cache.hits))
        found = {k: v for part, _, _ in gathered for k, v in part.items()}
        for _, fresh, _ in gathered:
            cache.merge(fresh)
        hits, decoded = sum(h for _, _, h in gathered), len(cache.fresh)
    if rank == 0:
        cache.save()
        where = f" (verdicts kept in {cache.path})" if cache.path else ""
        log.info("data scan: %d images, %d files decoded, %d unchanged files known from "
                 "the scan cache, %.1f s%s", len(files), decoded, hits,
                 time.monotonic() - start, where)
    return found


def _without(splits: dict[str, Split], bad: dict[Path, str]
             ) -> tuple[dict[str, Split], dict[str, Failures]]:
    kept = {name: Split(A=[f for f in s.A if f not in bad], B=[f for f in s.B if f not in bad])
            for name, s in splits.items()}
    skipped = {name: [(f, bad[f]) for f in [*s.A, *s.B] if f in bad]
               for name, s in splits.items()}
    return kept, skipped


def build_pipeline(cfg: Config, *, rank: int = 0, world_size: int = 1,
                   pin_memory: bool = False) -> InputPipeline:
    """Choose the tasks, scan the dataset, carve validation; the pipeline's `cfg` trains the
    chosen tasks. ConfigError names what is wrong."""
    d = cfg.data
    root = Path(d.root)
    if not root.is_dir():
        raise ConfigError("data.root", d.root, "dataset folder not found (create the built-in "
                          "one with `liss data synth data/synth`)")
    check_per_rank_batch(cfg, world_size)
    backend = resolve_backend(d.backend, cfg.train.device)
    listed = list_splits(root, direction=d.direction, max_dataset_size=d.max_dataset_size)
    _require_images(cfg, carve_validation(listed, d.val_fraction), "")
    tasks = choose_tasks(cfg, listed)
    cfg = with_tasks(cfg, tasks.names)
    with_depth = needs_depth(tasks.names)
    cache = ScanCache(cache_path(d.scan_cache, cfg.run.dir, root), root)
    bad = _scan(listed, with_depth, cache, rank, world_size)
    if bad and d.on_bad_file == "error":
        path = min(bad)
        raise ConfigError("data.on_bad_file", d.on_bad_file, f"{path}: {bad[path]} "
                          f"({len(bad)} unusable file{'s' * (len(bad) > 1)} under {root}; "
                          f"list them with `liss data check {root}`, or set "
                          "data.on_bad_file=skip to train without them)")
    kept, skipped = _without(listed, bad)
    splits = carve_validation(kept, d.val_fraction)
    if bad:
        _require_images(cfg, splits, f" ({len(bad)} unusable files skipped)")
        if rank == 0:
            examples = "; ".join(f"{p}: {r}" for p, r in sorted(bad.items())[:3])
            log.warning("data.on_bad_file=skip: %d unusable files left out, e.g. %s",
                        len(bad), examples)
    shapes = output_shapes(splits, Preprocess.of(d)) if d.preprocess == "none" else {}
    if shapes and d.batch_size // world_size > 1:
        _require_one_shape(cfg, splits["train"], shapes, world_size)
    return InputPipeline(cfg, splits, backend, rank, world_size, with_depth, pin_memory,
                         skip_bad=d.on_bad_file == "skip", skipped_files=skipped,
                         shapes=shapes, tasks=tasks)


def output_shapes(splits: dict[str, Split], prep: Preprocess) -> dict[Path, Size]:
    """{image: (h, w) it comes out as} for every image of every split, from the headers
    (30-70 µs a JPEG, in threads). An image the scan kept but whose header no longer reads is
    left out: loading it will fail, and be handled, like any file that breaks mid-run."""
    files = sorted({f for split in splits.values() for dom in DOMAINS for f in split[dom]})

    def shape(path: Path) -> Size | None:
        try:
            return prep.geometry(*image_size(path)).crop
        except BadImageError:
            return None

    with ThreadPoolExecutor() as pool:
        found = dict(zip(files, pool.map(shape, files), strict=True))
    return {f: s for f, s in found.items() if s is not None}


def _require_one_shape(cfg: Config, train: Split, shapes: dict[Path, Size],
                       world_size: int) -> None:
    """A batch of several images needs them the same size: name two that are not."""
    for dom in DOMAINS:
        known = [f for f in train[dom] if f in shapes]
        groups = by_shape(known, [shapes[f] for f in known])
        if len(groups) > 1:
            (a, *_), (b, *_) = groups[:2]
            (ha, wa), (hb, wb) = shapes[a], shapes[b]
            per_rank = cfg.data.batch_size // world_size
            raise ConfigError(
                "data.batch_size", cfg.data.batch_size,
                f"{per_rank} images per rank need one size, but under data.preprocess=none "
                f"{a} comes out {wa}x{ha} and {b} {wb}x{hb} ({len(groups)} sizes among "
                f"domain {dom}'s train images); set data.batch_size={world_size} (one image "
                "per rank) or another data.preprocess, e.g. scale_width_and_crop")


def _require_images(cfg: Config, splits: dict[str, Split], note: str) -> None:
    for split in ("train", "val"):
        for dom in DOMAINS:
            if not splits[split][dom]:
                folder = Path(cfg.data.root) / f"{split}{dom}"
                raise ConfigError("data.root", cfg.data.root, f"no {split} images for domain "
                                  f"{dom}{note} (looked in {folder})")
