"""FID and KID of 8-bit image sets, computed by torch-fidelity.

Features come from a torch-fidelity feature extractor: for `liss eval --fid` and
`train.eval_fid` its `FeatureExtractorInceptionV3` (the TensorFlow 2015-12-05 FID graph,
including TensorFlow's bilinear resize to 299 px) with the weights file the user supplies;
tests pass stand-ins derived from its `FeatureExtractorBase`. Statistics and distances are
torch-fidelity's own functions with its defaults (KID: 100 subsets, polynomial kernel of
degree 3, rng seed 2020), so the numbers are the ones its `calculate_metrics` gives on the
same images. liss only decides which images (docs/evaluation.md, "FID and KID") and keeps
the real images' features between calls. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from liss.data.images import BadImageError
from liss.eval.generators import LoadError

if TYPE_CHECKING:
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase as Extractor

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"  # 95,628,359 bytes
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
WEIGHTS_ENV = "LISS_INCEPTION_WEIGHTS"
INCEPTION = "inception-v3-compat"  # torch-fidelity's name for its FID Inception
FEATURE_LAYER = "2048"  # the pool features FID and KID use
KID_SUBSET_SIZE = 1000  # torch-fidelity's default, lowered to the smaller set's size


class InceptionWeightsError(LoadError):
    """The FID weights are missing or are not the expected file."""


# ---------------------------------------------------------------------- weights


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_location() -> Path:
    """Where liss looks for the weights when no path is given."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "liss" / WEIGHTS_FILE


def resolve_weights(path: str | Path | None) -> Path:
    """The Inception weights file: `path`, else $LISS_INCEPTION_WEIGHTS, else the default
    location; hash-checked."""
    given = path or os.environ.get(WEIGHTS_ENV)
    if not given and not default_location().is_file():
        raise InceptionWeightsError(
            f"FID needs the Inception weights {WEIGHTS_FILE} (the file pytorch-fid and "
            f"torch-fidelity use; liss downloads nothing): get it once and put it at "
            f"{default_location()}, or pass --inception-weights PATH, or set {WEIGHTS_ENV}=PATH")
    found = Path(given).expanduser() if given else default_location()
    if not found.is_file():
        raise InceptionWeightsError(f"{found}: no such file (the FID Inception weights "
                                    f"{WEIGHTS_FILE})")
    digest = sha256(found)
    if digest != WEIGHTS_SHA256:
        raise InceptionWeightsError(
            f"{found}: SHA-256 {digest} is not {WEIGHTS_SHA256} of {WEIGHTS_FILE}; FID from "
            "other weights is not comparable")
    return found


def load_inception(path: Path, device: torch.device) -> Extractor:
    """torch-fidelity's FID Inception with the (hash-checked) weights of `path`."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        net = FeatureExtractorInceptionV3(INCEPTION, [FEATURE_LAYER],
                                          feature_extractor_weights_path=str(path))
    except Exception as e:  # unpickling, or a state dict of another network
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InceptionWeightsError(f"{path}: not FID Inception weights ({first})") from None
    return net.to(device)


# ---------------------------------------------------------------------- images


def protocol_order(files: Iterable[Path]) -> list[Path]:
    """Files in the order torch-fidelity reads a folder (by real path), which decides its
    KID subsets."""
    return sorted(files, key=os.path.realpath)


def file_batches(files: Sequence[Path], batch_size: int) -> Iterator[Tensor]:
    """uint8 [N,3,H,W] batches of `files`, decoded as torch-fidelity decodes a folder (PIL,
    converted to RGB); consecutive images of one size share a batch."""
    from torch_fidelity.datasets import ImagesPathDataset

    images = ImagesPathDataset([str(f) for f in files])
    batch: list[Tensor] = []
    for i, path in enumerate(files):
        try:
            image = images[i]
        except OSError as e:  # PIL's UnidentifiedImageError included
            raise BadImageError(path, f"cannot decode: {e}") from None
        if batch and (len(batch) == batch_size or image.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(image)
    if batch:
        yield torch.stack(batch)


# ---------------------------------------------------------------------- features, scores


@torch.no_grad()
def features(extractor: Extractor, batches: Iterable[Tensor], device: torch.device) -> Tensor:
    """[N,D] features of uint8 [B,3,H,W] batches, on the CPU (as torch-fidelity keeps them)."""
    out = [extractor(x.to(device))[0].cpu() for x in batches]
    if not out:
        raise ValueError("no images to compute features of")
    return torch.cat(out)


def scores(fake: Tensor, real: Tensor) -> dict[str, float]:
    """{fid, kid, kid_std} of generated against real features, by torch-fidelity (KID
    subsets as large as the smaller set allows, up to its default 1000)."""
    from torch_fidelity.metric_fid import (
        KEY_METRIC_FID,
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    if min(len(fake), len(real)) < 2:
        raise ValueError(f"FID/KID need at least 2 images per set, got {len(fake)} and "
                         f"{len(real)}")
    fid = fid_statistics_to_metric(fid_features_to_statistics(fake),
                                   fid_features_to_statistics(real), verbose=False)
    kid = kid_features_to_metric(fake, real, verbose=False,
                                 kid_subset_size=min(KID_SUBSET_SIZE, len(fake), len(real)))
    return {"fid": fid[KEY_METRIC_FID], "kid": kid[KEY_METRIC_KID_MEAN],
            "kid_std": kid[KEY_METRIC_KID_STD]}
