"""FID and KID between image sets, from a pluggable feature extractor.

The extractor maps [N,3,H,W] images in [-1, 1] to [N,D] features; `liss eval --fid` uses the
FID Inception network (`inception.py`) with the standard weights the user supplies, tests use
small stand-ins. Nothing is downloaded.

* FID: the Fréchet distance between Gaussians fitted to the two feature sets,
  ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64. Tr((S1 S2)^(1/2)) is the sum of
  the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2) (similar to S1 S2, and
  symmetric positive semi-definite, so no complex square root is involved).
* KID: the unbiased estimator of the squared MMD with the cubic polynomial kernel
  k(x, y) = (x.y / D + 1)^3, averaged over random subsets (Bińkowski et al. 2018). Unlike
  FID it has no bias in the number of images, which matters for test sets of tens of images.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

from liss.eval.generators import LoadError

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"  # 95,628,359 bytes
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
WEIGHTS_ENV = "LISS_INCEPTION_WEIGHTS"
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000

Extractor = Callable[[Tensor], Tensor]


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
            f"FID needs the Inception weights {WEIGHTS_FILE} (the file pytorch-fid uses; "
            f"liss downloads nothing): get it once and put it at {default_location()}, or "
            f"pass --inception-weights PATH, or set {WEIGHTS_ENV}=PATH")
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
    """The FID Inception network with the weights of `path` (loaded as data only)."""
    from liss.eval.inception import FIDInception

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InceptionWeightsError(f"{path}: unreadable weights ({e})") from None
    net = FIDInception()
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, AttributeError) as e:  # shapes, or not a state dict
        missing, unexpected = [str(e).strip().splitlines()[-1].strip()], []
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InceptionWeightsError(f"{path}: not FID Inception weights ({missing[:3]} "
                                    f"missing or mismatched, {unexpected[:3]} unexpected)")
    return net.to(device).eval()


# ---------------------------------------------------------------------- features


@torch.no_grad()
def features(extractor: Extractor, batches: Iterable[Tensor], device: torch.device) -> Tensor:
    """[N,D] float64 features of every image of `batches` (on the CPU)."""
    out = [extractor(x.to(device)).double().cpu() for x in batches]
    if not out:
        raise ValueError("no images to compute features of")
    return torch.cat(out)


def mean_cov(f: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance of [N,D] features (N >= 2)."""
    if f.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {f.shape[0]}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(m: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two Gaussians, in float64."""
    mu1, s1, mu2, s2 = (t.double() for t in (mu1, s1, mu2, s2))
    r = _sqrt_psd(s1)
    m = r @ s2 @ r
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * tr_sqrt
    return max(float(value), 0.0)


def fid(f1: Tensor, f2: Tensor) -> float:
    return frechet_distance(*mean_cov(f1), *mean_cov(f2))


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, gamma: float | None = None,
                      coef: float = 1.0) -> Tensor:
    """(gamma x.y + coef)^degree, gamma = 1/D by default (KID's kernel)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * x @ y.T + coef) ** degree


def mmd2_unbiased(x: Tensor, y: Tensor, kernel: Callable[[Tensor, Tensor], Tensor]
                  = polynomial_kernel) -> float:
    """The unbiased estimator of MMD^2 between samples x [m,D] and y [n,D] (m, n >= 2)."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kid(f1: Tensor, f2: Tensor, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `subsets` random subsets of both sets."""
    size = min(subset_size, f1.shape[0], f2.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 images per set")
    if size == f1.shape[0] == f2.shape[0]:
        return mmd2_unbiased(f1, f2), 0.0  # every subset would be the whole set
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([
        mmd2_unbiased(f1[torch.randperm(f1.shape[0], generator=g)[:size]],
                      f2[torch.randperm(f2.shape[0], generator=g)[:size]])
        for _ in range(subsets)], dtype=torch.float64)
    return float(values.mean()), float(values.std()) if subsets > 1 else 0.0


def scores(fake: Tensor, real: Tensor) -> dict[str, float]:
    """{fid, kid, kid_std} between feature sets."""
    kid_mean, kid_std = kid(fake, real)
    return {"fid": fid(fake, real), "kid": kid_mean, "kid_std": kid_std}
