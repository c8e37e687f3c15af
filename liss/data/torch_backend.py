"""Pure-PyTorch input pipeline: torchvision decode, resize, keyed crop/flip, DataLoader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from liss.data.augment import CropFlip, center_params, train_params
from liss.data.batch import Batch, DomainBatch
from liss.data.images import read_image
from liss.data.layout import depth_path
from liss.data.sampler import SampleRef, StreamSampler


def load_sample(image_path: Path, with_depth: bool, load_size: int, crop_size: int,
                params: CropFlip) -> tuple[Tensor, Tensor | None]:
    """Decode, resize to load_size (bicubic; depth bilinear), crop and flip both together."""
    image = _resize(read_image(image_path), load_size, "bicubic")
    depth = _resize(read_image(depth_path(image_path), gray=True), load_size, "bilinear") \
        if with_depth else None

    def geometry(t: Tensor) -> Tensor:
        t = t[:, params.y:params.y + crop_size, params.x:params.x + crop_size]
        return t.flip(-1) if params.flip else t

    image = geometry(image).mul(2.0).sub(1.0)
    return image.contiguous(), None if depth is None else geometry(depth).contiguous()


def _resize(t: Tensor, size: int, mode: str) -> Tensor:
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t[None], size=(size, size), mode=mode, antialias=True,
                          align_corners=False)[0]
    return t.clamp_(0.0, 1.0)


class TrainDataset(Dataset):
    """Maps a `SampleRef` to one (A, B) sample."""

    def __init__(self, files_A: list[Path], files_B: list[Path], *, load_size: int,
                 crop_size: int, flip: bool, with_depth: bool):
        self.files = {"A": files_A, "B": files_B}
        self.load_size, self.crop_size = load_size, crop_size
        self.flip, self.with_depth = flip, with_depth

    def __len__(self) -> int:
        return max(len(f) for f in self.files.values())

    def __getitem__(self, ref: SampleRef) -> dict[str, tuple]:
        out = {}
        for d, index, key in (("A", ref.index_A, ref.key_A), ("B", ref.index_B, ref.key_B)):
            params = train_params(key, self.load_size, self.crop_size, self.flip)
            image, depth = load_sample(self.files[d][index], self.with_depth, self.load_size,
                                       self.crop_size, params)
            out[d] = (image, depth, key, index)
        return out


class EvalDataset(Dataset):
    """One domain's files, centre-cropped, with fixed keys (deterministic validation)."""

    def __init__(self, files: list[Path], *, load_size: int, crop_size: int, with_depth: bool,
                 key_salt: int, indices: list[int] | None = None):
        self.files, self.load_size, self.crop_size = files, load_size, crop_size
        self.with_depth, self.key_salt = with_depth, key_salt
        self.indices = list(range(len(files))) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple:
        from liss import rng

        index = self.indices[i]
        image, depth = load_sample(self.files[index], self.with_depth, self.load_size,
                                   self.crop_size, center_params(self.load_size, self.crop_size))
        return image, depth, rng.sample_key(self.key_salt, index), index


def _domain_batch(items: list[tuple]) -> DomainBatch:
    images, depths, keys, indices = zip(*items, strict=True)
    return DomainBatch(
        image=torch.stack(images),
        depth=None if depths[0] is None else torch.stack(depths),
        key=torch.tensor(keys, dtype=torch.long),
        index=torch.tensor(indices, dtype=torch.long),
    )


def collate_train(samples: list[dict]) -> Batch:
    return Batch(A=_domain_batch([s["A"] for s in samples]),
                 B=_domain_batch([s["B"] for s in samples]))


def train_loader(dataset: TrainDataset, sampler: StreamSampler, *, num_workers: int,
                 pin_memory: bool) -> Iterator[Batch]:
    """An endless iterator of local batches following the sampler's stream."""
    loader = DataLoader(dataset, batch_size=sampler.local_batch, sampler=sampler,
                        num_workers=num_workers, collate_fn=collate_train,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0,
                        prefetch_factor=4 if num_workers > 0 else None)
    return iter(loader)


def eval_loader(dataset: EvalDataset, *, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=_domain_batch)
