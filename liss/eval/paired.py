"""Translation quality against paired ground truth (synthetic data: `gt/testA2B`, ...).

For each direction, the translation and the untranslated input (the identity baseline)
against the truth:

* whole image: `l1`, `psnr`, `ssim` (torchmetrics). On the synthetic data only the objects'
  coats change, so these favour leaving the image alone;
* `changed_l1`: L1 over the pixels the truth changes (|truth - input| summed over channels
  above CHANGED);
* with object masks (`gt/<folder>/masks/<stem>.png`, written by `liss data synth`):
  `bg_l1`, `bg_psnr` on the pixels no object touches (background preservation; the
  identity keeps it but for JPEG noise), `object_l1` on the object pixels, and `texture`
  (`texture.py`), a distance between the distributions of local colour and gradient
  energy on the object pixels that a shift of the stripes hardly changes.

Which are well-posed where (docs/evaluation.md): B→A (remove the stripes) has one right
answer, so `object_l1` measures it; A→B (add stripes) is right only up to the stripes'
phase, so only `texture` and the background numbers do. Object-region numbers average over
the images whose crop shows an object.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from liss.data.augment import Preprocess, center_params
from liss.data.batch import by_shape
from liss.data.layout import list_images, mask_path
from liss.data.torch_backend import load_mask, load_sample
from liss.eval.texture import texture_distance
from liss.model import LissModel, other

CHANGED = 0.1  # in [0, 1] units, summed over RGB
MAX_PSNR = 100.0  # dB: what an MSE of 1e-10 gives
BACKGROUND, OBJECT = 1 / 255, 0.5  # mask coverage below / above which a pixel counts as such


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


def masked_psnr(x: Tensor, y: Tensor, region: Tensor) -> Tensor:
    """Per-image PSNR (dB) over the pixels where `region` (N, 1, H, W) is set, capped at
    MAX_PSNR; NaN for an image without any."""
    squared = (x - y).square().mean(1, keepdim=True) * region
    mse = squared.flatten(1).sum(1) / region.flatten(1).sum(1)
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).clamp(max=MAX_PSNR)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM of images in [0, 1], by torchmetrics (11x11 Gaussian window of sigma
    1.5, Wang et al. 2004 constants; the window reflects at the borders)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")


def _pairs(images: list[Path], truth: Path) -> list[tuple[Path, Path]]:
    by_stem = {p.stem: p for p in list_images(truth)}
    return [(p, by_stem[p.stem]) for p in images if p.stem in by_stem]


def image_scores(pred: Tensor, truth: Tensor, source: Tensor,
                 coverage: Tensor | None) -> dict[str, Tensor]:
    """Per-image scores (N,) of `pred` against `truth`, images in [0, 1] (N, 3, H, W);
    `source` is the input (it says which pixels the truth changes), `coverage` the object
    masks (N, 1, H, W) in [0, 1] or None (no masked scores). NaN: the image has no such
    pixel (an object-region score of a crop without objects)."""
    err = (pred - truth).abs()
    changed = ((truth - source).abs().sum(1, keepdim=True) > CHANGED).float()
    scores = {
        "l1": err.flatten(1).mean(1), "psnr": psnr(pred, truth), "ssim": ssim(pred, truth),
        "changed_l1": (err.mean(1, keepdim=True) * changed).flatten(1).sum(1)
        / changed.flatten(1).sum(1).clamp_min(1),
    }
    if coverage is None:
        return scores
    background, objects = (coverage < BACKGROUND).float(), coverage > OBJECT
    return scores | {
        "bg_l1": _region_mean(err, background), "bg_psnr": masked_psnr(pred, truth, background),
        "object_l1": _region_mean(err, objects.float()),
        "texture": texture_distance(pred, truth, objects),
    }


def _region_mean(err: Tensor, region: Tensor) -> Tensor:
    return (err.mean(1, keepdim=True) * region).flatten(1).sum(1) / region.flatten(1).sum(1)


@torch.no_grad()
def paired_metrics(model: LissModel, root: Path, images: dict[str, list[Path]], *,
                   prep: Preprocess, split: str = "test", direction: str = "AtoB",
                   batch_size: int = 8, device: torch.device | None = None,
                   truth_split: str | None = None) -> dict[str, float]:
    """`{split}/{A2B,B2A}_{metric}` and `..._identity_{metric}` where truth exists, for each
    metric of `liss.paired_names.METRICS` (the masked ones where every truth image of the
    direction has a mask).

    Images, truth and masks are read as validation reads them (`prep`, centre crops).
    `truth_split` names the truth folder when it is not `split`'s own: validation images
    carved from train have their truth in `gt/train{A2B,B2A}`.
    """
    device = device or torch.device("cpu")
    out: dict[str, float] = {}
    was_training = model.training
    model.eval()
    for d, files in images.items():
        pairs = _pairs(files, gt_folder(root, truth_split or split, d, direction))
        if not pairs:
            continue
        masked = all(mask_path(gt).is_file() for _, gt in pairs)
        sums: dict[str, list[float]] = {}  # key -> [sum, count] over the images it is defined on
        for src, gt, coverage in _loaded(pairs, prep, batch_size, masked):
            src, gt = src.to(device), gt.to(device)
            fake = model.translate(d, src).float()
            g01, s01 = (gt + 1) / 2, (src + 1) / 2
            cov = None if coverage is None else coverage.to(device)
            for prefix, pred in (("", fake), ("identity_", src)):
                p01 = (pred.clamp(-1, 1) + 1) / 2
                for k, v in image_scores(p01, g01, s01, cov).items():
                    defined = v[~v.isnan()]
                    total = sums.setdefault(prefix + k, [0.0, 0])
                    total[0] += defined.sum().item()
                    total[1] += len(defined)
        name = f"{d}2{other(d)}"
        out.update({f"{split}/{name}_{k}": s / n for k, (s, n) in sums.items() if n})
    model.train(was_training)
    return out


def _loaded(pairs: list[tuple[Path, Path]], prep: Preprocess, batch_size: int, masked: bool
            ) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """(images, truth, masks or None) batches of up to `batch_size` pairs, each of one size."""
    def load(path: Path) -> Tensor:
        return load_sample(path, False, prep, center_params)[0]

    for i in range(0, len(pairs), batch_size):
        loaded = [(load(a), load(b), load_mask(mask_path(b), prep, center_params)
                   if masked else None) for a, b in pairs[i:i + batch_size]]
        for group in by_shape(loaded, [(a.shape, b.shape) for a, b, _ in loaded]):
            masks = None if not masked else torch.stack([m for _, _, m in group])
            yield (torch.stack([a for a, _, _ in group]), torch.stack([b for _, b, _ in group]),
                   masks)
