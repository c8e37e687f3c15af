"""The trainer's view of the data: a resumable train stream and per-domain validation sets,
behind one contract whatever the backend (`data.backend`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from liss.config import Config, ConfigError
from liss.data.batch import Batch, DomainBatch
from liss.data.layout import DOMAINS, Split, load_splits
from liss.data.sampler import StreamSampler

VAL_KEY_SALT = 0x5EED_7A1  # validation keys are fixed, so jigsaw puzzles never change


def resolve_backend(name: str) -> str:
    return "torch" if name == "auto" else name


@dataclass
class InputPipeline:
    cfg: Config
    splits: dict[str, Split]
    backend: str
    rank: int
    world_size: int
    with_depth: bool
    pin_memory: bool

    @property
    def local_batch(self) -> int:
        return self.cfg.data.batch_size // self.world_size

    @property
    def epoch_length(self) -> int:
        return max(len(self.splits["train"].A), len(self.splits["train"].B))

    def sampler(self, start_step: int = 0) -> StreamSampler:
        train = self.splits["train"]
        return StreamSampler(len(train.A), len(train.B), seed=self.cfg.run.seed,
                             local_batch=self.local_batch, rank=self.rank,
                             world_size=self.world_size, start_step=start_step)

    def train_batches(self, start_step: int = 0) -> Iterator[Batch]:
        """This rank's local batches from `start_step` on (endless)."""
        d = self.cfg.data
        sampler = self.sampler(start_step)
        train = self.splits["train"]
        if self.backend == "torch":
            from liss.data.torch_backend import TrainDataset, train_loader

            dataset = TrainDataset(train.A, train.B, load_size=d.load_size,
                                   crop_size=d.crop_size, flip=not d.no_flip,
                                   with_depth=self.with_depth)
            return train_loader(dataset, sampler, num_workers=d.num_workers,
                                pin_memory=self.pin_memory)
        raise ConfigError("data.backend", self.backend, "the dali backend is not available yet; "
                          "use data.backend=torch")

    def eval_batches(self, split: str, domain: str, batch_size: int | None = None
                     ) -> Iterable[DomainBatch]:
        """This rank's shard (every world_size-th image) of one domain, centre-cropped."""
        from liss.data.torch_backend import EvalDataset, eval_loader

        d = self.cfg.data
        files = self.splits[split][domain]
        dataset = EvalDataset(files, load_size=d.load_size, crop_size=d.crop_size,
                              with_depth=self.with_depth, key_salt=VAL_KEY_SALT + ord(domain),
                              indices=list(range(self.rank, len(files), self.world_size)))
        return eval_loader(dataset, batch_size=batch_size or max(1, self.local_batch),
                           num_workers=min(d.num_workers, 2))


def build_pipeline(cfg: Config, *, rank: int = 0, world_size: int = 1,
                   pin_memory: bool = False) -> InputPipeline:
    """Scan the dataset and check it can feed this config; ConfigError names what is wrong."""
    d = cfg.data
    root = Path(d.root)
    if not root.is_dir():
        raise ConfigError("data.root", d.root, "dataset folder not found (create the built-in "
                          "one with `liss data synth data/synth`)")
    if d.batch_size % world_size:
        raise ConfigError("data.batch_size", d.batch_size,
                          f"must be divisible by the world size ({world_size})")
    splits = load_splits(root, direction=d.direction, val_fraction=d.val_fraction,
                         max_dataset_size=d.max_dataset_size)
    for split in ("train", "val"):
        for dom in DOMAINS:
            if not splits[split][dom]:
                folder = root / f"{split}{dom}"
                raise ConfigError("data.root", d.root, f"no {split} images for domain {dom} "
                                  f"(looked in {folder})")
    with_depth = "depth" in cfg.tasks.auxiliary_tasks
    return InputPipeline(cfg, splits, resolve_backend(d.backend), rank, world_size, with_depth,
                         pin_memory)
