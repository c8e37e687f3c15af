"""Translation quality against paired ground truth (synthetic data: `gt/testA2B`, ...).

For each direction: L1, PSNR and SSIM (torchmetrics) of the translation against the truth,
and the same for the untranslated input (the identity baseline a useful translation must
beat). On the synthetic data only the objects' coats change, so whole-image scores favour
the identity; `changed_l1` is the L1 over the pixels the truth changes (where |truth - input|
summed over channels exceeds CHANGED), which is where a translation has to do its work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from liss.data.augment import Preprocess, center_params
from liss.data.batch import by_shape
from liss.data.layout import list_images
from liss.data.torch_backend import load_sample
from liss.model import LissModel, other

CHANGED = 0.1  # in [0, 1] units, summed over RGB
MAX_PSNR = 100.0  # dB: what an MSE of 1e-10 gives
METRICS = ("l1", "psnr", "ssim", "changed_l1")


def gt_folder(root: Path, split: str, domain: str, direction: str = "AtoB") -> Path:
    """Where the truth for translating `split` images of (config) domain `domain` lives."""
    src = domain if direction == "AtoB" else other(domain)
    return root / "gt" / f"{split}{src}2{other(src)}"


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR (dB) of images in [0, 1], by torchmetrics; identical images (infinite
    PSNR) count as MAX_PSNR so that means stay finite."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    value = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return value.clamp(max=MAX_PSNR)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM of images in [0, 1], by torchmetrics (11x11 Gaussian window of sigma
    1.5, Wang et al. 2004 constants; the window reflects at the borders)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")


def _pairs(images: list[Path], truth: Path) -> list[tuple[Path, Path]]:
    by_stem = {p.stem: p for p in list_images(truth)}
    return [(p, by_stem[p.stem]) for p in images if p.stem in by_stem]


@torch.no_grad()
def paired_metrics(model: LissModel, root: Path, images: dict[str, list[Path]], *,
                   prep: Preprocess, split: str = "test", direction: str = "AtoB",
                   batch_size: int = 8, device: torch.device | None = None,
                   truth_split: str | None = None) -> dict[str, float]:
    """`{split}/{A2B,B2A}_{l1,psnr,ssim}` and `..._identity_*` where truth exists.

    Images and truth are read as validation reads them (`prep`, centre crops). `truth_split`
    names the truth folder when it is not `split`'s own: validation images carved from train
    have their truth in `gt/train{A2B,B2A}`.
    """
    device = device or torch.device("cpu")
    out: dict[str, float] = {}
    was_training = model.training
    model.eval()
    for d, files in images.items():
        pairs = _pairs(files, gt_folder(root, truth_split or split, d, direction))
        if not pairs:
            continue
        sums = {p + k: 0.0 for p in ("", "identity_") for k in METRICS}
        for src, gt in _loaded(pairs, prep, batch_size):
            src, gt = src.to(device), gt.to(device)
            fake = model.translate(d, src).float()
            g01, s01 = (gt + 1) / 2, (src + 1) / 2
            changed = ((g01 - s01).abs().sum(1, keepdim=True) > CHANGED).float()
            for prefix, pred in (("", fake), ("identity_", src)):
                p01 = (pred.clamp(-1, 1) + 1) / 2
                err = (p01 - g01).abs()
                sums[prefix + "l1"] += err.flatten(1).mean(1).sum().item()
                sums[prefix + "psnr"] += psnr(p01, g01).sum().item()
                sums[prefix + "ssim"] += ssim(p01, g01).sum().item()
                per_image = (err.mean(1, keepdim=True) * changed).flatten(1).sum(1) \
                    / changed.flatten(1).sum(1).clamp_min(1)
                sums[prefix + "changed_l1"] += per_image.sum().item()
        name = f"{d}2{other(d)}"
        out.update({f"{split}/{name}_{k}": v / len(pairs) for k, v in sums.items()})
    model.train(was_training)
    return out


def _loaded(pairs: list[tuple[Path, Path]], prep: Preprocess, batch_size: int
            ) -> Iterator[tuple[Tensor, Tensor]]:
    """(images, truth) batches of up to `batch_size` pairs, each of one size."""
    def load(path: Path) -> Tensor:
        return load_sample(path, False, prep, center_params)[0]

    for i in range(0, len(pairs), batch_size):
        loaded = [(load(a), load(b)) for a, b in pairs[i:i + batch_size]]
        for group in by_shape(loaded, [(a.shape, b.shape) for a, b in loaded]):
            yield torch.stack([a for a, _ in group]), torch.stack([b for _, b in group])
