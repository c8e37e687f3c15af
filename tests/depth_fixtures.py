"""A tiny depth model with a known output and a small mixed dataset, shared by
unit/test_depth_maps.py and integration/test_depth_cli.py. Not a test module.

The model's inverse depth is a horizontal ramp, (column + 0.5) / width at its input size, plus
the channel mean of its (normalised) input through a 1x1 conv. The images are one flat gray,
so with MEAN / STD the model sees V everywhere and every map is known in closed form
(`expected_row`): a wrong normalisation, a wrong resize or a wrong encoding shows.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

GRAY = 128  # every image's colour
MEAN, STD = (0.25, 0.25, 0.25), (0.5, 0.5, 0.5)
V = (GRAY / 255 - 0.25) / 0.5  # what the model sees at every pixel
INPUT_SIZE = 16
# (folder, stem, suffix, (height, width)): JPEG and PNG, up- and downscaled, non-square
IMAGES = [("trainA", "a0", ".png", (24, 40)), ("trainA", "a1", ".jpg", (30, 12)),
          ("trainA", "a2", ".png", (16, 16)), ("trainB", "b0", ".jpg", (20, 28)),
          ("trainB", "b1", ".png", (9, 13)), ("testA", "t0", ".png", (18, 50)),
          ("testB", "t1", ".jpg", (33, 21))]


class RampModel(nn.Module):
    """[N,3,H,W] -> [N,1,H,W]: ramp over the columns + channel mean; `depth` returns 1 / it."""

    def __init__(self, depth: bool = False):
        super().__init__()
        self.depth = depth
        self.mix = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.mix.weight.fill_(1 / 3)
            self.mix.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        w = x.shape[-1]
        ramp = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) / w
        inverse = self.mix(x) + ramp
        return 1.0 / inverse if self.depth else inverse


def export_torchscript(path: Path, model: nn.Module | None = None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script((model or RampModel()).eval()).save(str(path))
    return path


def export_onnx(path: Path, model: nn.Module | None = None, dynamic: bool = True) -> Path:
    """The TorchScript-based exporter (dynamo=False): a second here, against several with
    dynamo, and this model needs nothing newer."""
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    axes = {"image": {0: "n", 2: "h", 3: "w"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export((model or RampModel()).eval(), (example,), str(path), dynamo=False,
                          input_names=["image"], output_names=["depth"], dynamic_axes=axes)
    return path


def make_dataset(root: Path) -> list[Path]:
    """The IMAGES under `root` (flat gray); returns their paths."""
    paths = []
    for folder, stem, suffix, (h, w) in IMAGES:
        (root / folder).mkdir(parents=True, exist_ok=True)
        path = root / folder / f"{stem}{suffix}"
        Image.fromarray(np.full((h, w, 3), GRAY, np.uint8)).save(path)
        paths.append(path)
    return paths


def expected_row(width: int) -> tuple[np.ndarray, np.ndarray]:
    """(stored value per column of an image `width` wide with `--percentile 100`, mask of the
    columns far enough from the borders for the resize to be exact)."""
    ramp = (np.arange(width) + 0.5) / width  # a linear ramp survives a linear resize
    inverse = np.clip(ramp, 0.5 / INPUT_SIZE, 1 - 0.5 / INPUT_SIZE) + V
    margin = 2 * max(1.0, INPUT_SIZE / width) / INPUT_SIZE  # the filter's reach, as a fraction
    interior = (ramp > margin) & (ramp < 1 - margin)
    return inverse / (1 - 0.5 / INPUT_SIZE + V), interior
