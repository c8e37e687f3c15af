"""Pure-PyTorch input pipeline: PIL decode, resize and keyed crop/flip as `data.preprocess`
says (`augment`), DataLoader workers.

Samples that had to be substituted (`data.on_bad_file=skip`, a file that went bad after the
start-up scan) travel with their batch as `(file, reason)` pairs, because a worker process
cannot report them any other way; `pipeline.InputPipeline` records them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from liss import rng
from liss.data.augment import CropFlip, Geometry, Preprocess, Size, center_params, train_params
from liss.data.batch import Batch, DomainBatch, by_shape
from liss.data.images import Failures, depth_file, load_or_substitute, read_image
from liss.data.sampler import SampleRef, StreamSampler

Place = Callable[[Geometry], CropFlip]  # where the crop of a geometry goes (keyed or centred)


def load_sample(image_path: Path, with_depth: bool, prep: Preprocess, place: Place
                ) -> tuple[Tensor, Tensor | None]:
    """Decode, resize as `prep` says from the image's size (bicubic; depth bilinear, to the
    image's geometry), crop where `place` puts the box, flip: image and depth together."""
    image = read_image(image_path)
    params = place(prep.geometry(*image.shape[-2:]))
    resized = params.geometry.resized
    image = _crop_flip(_resize(image, resized, "bicubic"), params).mul(2.0).sub(1.0)
    depth = _crop_flip(_resize(read_image(depth_file(image_path), gray=True), resized,
                               "bilinear"), params) if with_depth else None
    return image.contiguous(), None if depth is None else depth.contiguous()


def load_mask(mask_path: Path, prep: Preprocess, place: Place) -> Tensor:
    """[1,h,w] coverage in [0, 1] of a mask image, through the geometry its image takes:
    resized bilinear (so a pixel on the border keeps a partial coverage), cropped, flipped."""
    mask = read_image(mask_path, gray=True)
    params = place(prep.geometry(*mask.shape[-2:]))
    return _crop_flip(_resize(mask, params.geometry.resized, "bilinear"), params).contiguous()


def _crop_flip(t: Tensor, params: CropFlip) -> Tensor:
    ch, cw = params.geometry.crop
    t = t[:, params.y:params.y + ch, params.x:params.x + cw]
    return t.flip(-1) if params.flip else t


def _resize(t: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    if t.shape[-2:] != size:
        t = F.interpolate(t[None], size=size, mode=mode, antialias=True,
                          align_corners=False)[0]
    return t.clamp_(0.0, 1.0)


class _Loader:
    """What both datasets share: the geometry rule, and the stand-in rule for failed files."""

    def __init__(self, *, prep: Preprocess, with_depth: bool, skip_bad: bool):
        self.prep, self.with_depth, self.skip_bad = prep, with_depth, skip_bad

    def load(self, files: list[Path], index: int, place: Place, known_bad: set[int]
             ) -> tuple[int, tuple[Tensor, Tensor | None], Failures]:
        load = partial(load_sample, with_depth=self.with_depth, prep=self.prep, place=place)
        return load_or_substitute(files, index, load, skip=self.skip_bad, known_bad=known_bad)


class TrainDataset(_Loader, Dataset):
    """Maps a `SampleRef` to one (A, B) sample, plus the failures met loading it."""

    def __init__(self, files_A: list[Path], files_B: list[Path], *, prep: Preprocess,
                 flip: bool, with_depth: bool, skip_bad: bool = False):
        super().__init__(prep=prep, with_depth=with_depth, skip_bad=skip_bad)
        self.files = {"A": files_A, "B": files_B}
        self.flip = flip
        self.known_bad: dict[str, set[int]] = {"A": set(), "B": set()}  # per worker

    def __len__(self) -> int:
        return max(len(f) for f in self.files.values())

    def __getitem__(self, ref: SampleRef) -> dict:
        out: dict = {"failures": []}
        for d, index, key in (("A", ref.index_A, ref.key_A), ("B", ref.index_B, ref.key_B)):
            place = partial(train_params, key, flip=self.flip)
            used, (image, depth), failures = self.load(self.files[d], index, place,
                                                       self.known_bad[d])
            out[d] = (image, depth, key, used)
            out["failures"] += failures
        return out


class EvalDataset(_Loader, Dataset):
    """One domain's files, centre-cropped, with fixed keys (deterministic validation)."""

    def __init__(self, files: list[Path], *, prep: Preprocess, with_depth: bool,
                 key_salt: int, indices: list[int] | None = None, skip_bad: bool = False):
        super().__init__(prep=prep, with_depth=with_depth, skip_bad=skip_bad)
        self.files, self.key_salt = files, key_salt
        self.indices = list(range(len(files))) if indices is None else indices
        self.known_bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple:
        index = self.indices[i]
        used, (image, depth), failures = self.load(self.files, index, center_params,
                                                   self.known_bad)
        return image, depth, rng.sample_key(self.key_salt, index), used, failures


def _domain_batch(items: list[tuple]) -> DomainBatch:
    images, depths, keys, indices = zip(*items, strict=True)
    return DomainBatch(
        image=torch.stack(images),
        depth=None if depths[0] is None else torch.stack(depths),
        key=torch.tensor(keys, dtype=torch.long),
        index=torch.tensor(indices, dtype=torch.long),
    )


def collate_train(samples: list[dict]) -> tuple[Batch, Failures]:
    batch = Batch(A=_domain_batch([s["A"] for s in samples]),
                  B=_domain_batch([s["B"] for s in samples]))
    return batch, [f for s in samples for f in s["failures"]]


def collate_eval(items: list[tuple]) -> tuple[DomainBatch, Failures]:
    return _domain_batch([item[:4] for item in items]), [f for item in items for f in item[4]]


def train_loader(dataset: TrainDataset, sampler: StreamSampler, *, num_workers: int,
                 pin_memory: bool) -> Iterator[tuple[Batch, Failures]]:
    """An endless iterator of local batches following the sampler's stream."""
    loader = DataLoader(dataset, batch_size=sampler.local_batch, sampler=sampler,
                        num_workers=num_workers, collate_fn=collate_train,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0,
                        prefetch_factor=4 if num_workers > 0 else None)
    return iter(loader)


def eval_loader(dataset: EvalDataset, *, batch_size: int, num_workers: int,
                shapes: list[Size | None] | None = None) -> DataLoader:
    """Yields (DomainBatch, failures) in file order. Given each item's output shape (they
    differ under data.preprocess=none; None: not known), each batch holds one shape: items
    of the first shape met come first, in file order, then those of the next."""
    if shapes is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False,
                          num_workers=num_workers, collate_fn=collate_eval)
    batches = [group[i:i + batch_size] for group in by_shape(range(len(shapes)), shapes)
               for i in range(0, len(group), batch_size)]
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                      collate_fn=collate_eval)
