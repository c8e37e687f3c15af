"""Image grids: per domain, rows real / translated / reconstructed / depth / gray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from liss.data.batch import DomainBatch
from liss.model import LissModel


@torch.no_grad()
def render_grid(model: LissModel, samples: dict[str, DomainBatch]) -> np.ndarray:
    """HxWx3 uint8: for each domain, one row per visual, one column per sample."""
    was_training = model.training
    model.eval()
    rows = []
    for d, x in samples.items():
        for image in model.visuals(d, x).values():
            rows.append(image.cpu())
    model.train(was_training)
    n = samples[next(iter(samples))].image.shape[0]
    grid = make_grid(torch.cat(rows), nrow=n, padding=2, pad_value=1.0)
    return ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def save_png(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
