"""Image grids: per domain, rows real / translated / reconstructed / depth / gray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F
from torchvision.utils import make_grid

from liss.data.batch import DomainBatch
from liss.model import LissModel


@torch.no_grad()
def render_grid(model: LissModel, samples: dict[str, list[DomainBatch]]) -> np.ndarray:
    """HxWx3 uint8: for each domain, one row per visual, one column per sample (as many as
    the domain with the fewest). Samples come in batches of one size each; images of
    different sizes (data.preprocess=none) sit centred in white cells of the largest."""
    was_training = model.training
    model.eval()
    n = min(sum(len(x) for x in batches) for batches in samples.values())
    cells: list[Tensor] = []
    for d, batches in samples.items():
        visuals = [model.visuals(d, x) for x in batches]
        for name in visuals[0]:
            cells += [image.cpu() for v in visuals for image in v[name]][:n]
    model.train(was_training)
    h, w = (max(c.shape[i] for c in cells) for i in (-2, -1))
    grid = make_grid(torch.stack([_centred(c, h, w) for c in cells]), nrow=n, padding=2,
                     pad_value=1.0)
    return ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def _centred(image: Tensor, h: int, w: int) -> Tensor:
    """[3,h',w'] in the middle of a white [3,h,w] cell."""
    top, left = (h - image.shape[-2]) // 2, (w - image.shape[-1]) // 2
    return F.pad(image, (left, w - image.shape[-1] - left, top, h - image.shape[-2] - top),
                 value=1.0)


def save_png(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
