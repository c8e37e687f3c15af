"""The image pool of past fakes shown to the discriminators (Shrivastava et al.; spec §4.2).

Decisions use a private `random.Random` (host side, no device sync); its state and the
stored images are part of the checkpoint.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import Tensor


class ImagePool:
    """While filling, store and return each fake; once full, with p=0.5 swap it for an old one."""

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.images: list[Tensor] = []
        self.rng = random.Random(seed)

    def query(self, fakes: Tensor) -> Tensor:
        if self.size == 0:
            return fakes
        out = []
        for image in fakes.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.random() > 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i])
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"images": [t.cpu() for t in self.images],
                "rng": _rng_state_to_tensor(self.rng.getstate())}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.images = [t.to(device) for t in state["images"]]
        self.rng.setstate(_rng_state_from_tensor(state["rng"]))


def _rng_state_to_tensor(state: tuple) -> Tensor:
    """random.Random state as an int64 tensor (loadable with torch.load(weights_only=True)).

    The pool never calls gauss(), so the cached-gaussian slot is always None.
    """
    version, internal, _ = state
    return torch.tensor([version, *internal], dtype=torch.long)


def _rng_state_from_tensor(t: Tensor) -> tuple:
    values = t.tolist()
    return values[0], tuple(values[1:]), None
