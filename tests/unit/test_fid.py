"""FID and KID against closed forms with stand-in feature extractors; the clean-room FID
Inception network against torchvision's Inception-v3 with the FID graph's pooling; the
weights file: missing, wrong hash, loadable."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from liss.eval import fid
from liss.eval.inception import FEATURES, FIDInception

G = torch.float64


def gaussian(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, mean.numel(), generator=g, dtype=G)
    return mean + z @ torch.linalg.cholesky(cov).T


def test_frechet_distance_matches_the_2x2_closed_form() -> None:
    """For 2x2 PSD S1, S2: Tr((S1 S2)^(1/2)) = sqrt(Tr(S1 S2) + 2 sqrt(det S1 det S2)),
    since the eigenvalues of S1 S2 are real and non-negative. Non-commuting covariances."""
    s1 = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=G)
    s2 = torch.tensor([[1.0, -0.5], [-0.5, 3.0]], dtype=G)
    mu1, mu2 = torch.tensor([0.0, 1.0], dtype=G), torch.tensor([2.0, -1.0], dtype=G)
    tr_sqrt = math.sqrt(float((s1 @ s2).trace()) + 2 * math.sqrt(
        float(torch.linalg.det(s1) * torch.linalg.det(s2))))
    expected = float((mu1 - mu2).square().sum() + s1.trace() + s2.trace()) - 2 * tr_sqrt
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)
    assert fid.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-12)


def standin(x: torch.Tensor) -> torch.Tensor:
    """A stand-in extractor: each image's per-channel mean (3 features)."""
    return x.mean((2, 3))


def as_images(features: torch.Tensor) -> list[torch.Tensor]:
    """Images whose per-channel means are the given feature rows, in batches of 500."""
    images = features.float()[:, :, None, None].expand(-1, -1, 4, 4)
    return list(images.split(500))


def test_fid_of_identical_sets_is_zero_through_the_extractor() -> None:
    x = gaussian(400, torch.zeros(3, dtype=G), torch.eye(3, dtype=G), seed=0)
    f = fid.features(standin, as_images(x), torch.device("cpu"))
    assert f.shape == (400, 3) and f.dtype == G
    assert fid.fid(f, f.clone()) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_shifted_gaussians_approaches_the_analytic_distance() -> None:
    """Samples of N(mu1, S1) and N(mu2, S2) through images and the stand-in extractor: the
    estimate converges to ||mu1-mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    mu1, mu2 = torch.tensor([0.0, 0.0, 0.0], dtype=G), torch.tensor([0.5, -0.25, 0.0], dtype=G)
    s1 = torch.diag(torch.tensor([0.04, 0.09, 0.01], dtype=G))
    s2 = torch.diag(torch.tensor([0.16, 0.01, 0.01], dtype=G))
    analytic = 0.25 + 0.0625 + sum((a**0.5 - b**0.5) ** 2 for a, b in
                                   ((0.04, 0.16), (0.09, 0.01), (0.01, 0.01)))
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(analytic, rel=1e-12)
    cpu = torch.device("cpu")
    f1 = fid.features(standin, as_images(gaussian(20000, mu1, s1, seed=1)), cpu)
    f2 = fid.features(standin, as_images(gaussian(20000, mu2, s2, seed=2)), cpu)
    assert fid.fid(f1, f2) == pytest.approx(analytic, abs=0.01)


def test_kid_is_unbiased() -> None:
    """With a linear kernel the MMD^2 is ||mu1 - mu2||^2; the unbiased estimator averages to it
    over many small samples, where the biased one would be off by (Tr S1 + Tr S2) / m."""
    m, dim = 8, 4
    mu1, mu2 = torch.zeros(dim, dtype=G), torch.full((dim,), 0.25, dtype=G)
    cov = torch.eye(dim, dtype=G)

    def linear(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return fid.polynomial_kernel(a, b, degree=1, gamma=1.0, coef=0.0)

    draws = torch.tensor([fid.mmd2_unbiased(gaussian(m, mu1, cov, 2 * i),
                                            gaussian(m, mu2, cov, 2 * i + 1), linear)
                          for i in range(300)])
    truth, bias = 4 * 0.25**2, 2 * dim / m
    stderr = float(draws.std()) / math.sqrt(len(draws))
    assert abs(float(draws.mean()) - truth) < 4 * stderr < bias / 4


def test_kid_is_near_zero_for_one_distribution_and_not_for_two() -> None:
    cov = torch.eye(8, dtype=G)
    a = gaussian(600, torch.zeros(8, dtype=G), cov, seed=3)
    b = gaussian(600, torch.zeros(8, dtype=G), cov, seed=4)
    c = gaussian(600, torch.full((8,), 0.5, dtype=G), cov, seed=5)
    same, same_std = fid.kid(a, b, subsets=10, subset_size=300)
    shifted, _ = fid.kid(a, c, subsets=10, subset_size=300)
    assert abs(same) < 3 * same_std + 1e-3 and same_std > 0
    assert shifted > 50 * abs(same)
    assert fid.kid(a, b, subsets=10, subset_size=300) == (same, same_std)  # seeded
    assert fid.kid(a[:50], b[:50])[1] == 0.0  # subsets as large as the sets: one estimate
    scores = fid.scores(a, c)
    assert set(scores) == {"fid", "kid", "kid_std"} and scores["fid"] > 0


# ---------------------------------------------------------------------- the weights


def test_missing_weights_name_the_file_and_where_to_put_it(tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.delenv(fid.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(fid.InceptionWeightsError) as e:
        fid.resolve_weights(None)
    message = str(e.value)
    assert fid.WEIGHTS_FILE in message and fid.WEIGHTS_ENV in message
    assert str(tmp_path / "liss" / fid.WEIGHTS_FILE) in message


def test_wrong_file_fails_the_hash_check(tmp_path: Path, monkeypatch) -> None:
    wrong = tmp_path / fid.WEIGHTS_FILE
    wrong.write_bytes(b"some other weights")
    monkeypatch.setenv(fid.WEIGHTS_ENV, str(wrong))
    with pytest.raises(fid.InceptionWeightsError, match=f"is not {fid.WEIGHTS_SHA256}"):
        fid.resolve_weights(None)
    with pytest.raises(fid.InceptionWeightsError, match="no such file"):
        fid.resolve_weights(tmp_path / "elsewhere.pth")


def test_weights_found_in_the_default_location_load(tmp_path: Path, monkeypatch) -> None:
    """A file laid out like pt_inception (no num_batches_tracked, as the port) passes the
    hash check it is given and loads strictly; a foreign state dict does not load."""
    monkeypatch.delenv(fid.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = fid.default_location()
    path.parent.mkdir(parents=True)
    state = {k: v for k, v in FIDInception().state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    monkeypatch.setattr(fid, "WEIGHTS_SHA256", fid.sha256(path))
    assert fid.resolve_weights(None) == path
    net = fid.load_inception(path, torch.device("cpu"))
    assert isinstance(net, FIDInception) and not net.training
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "foreign.pth")
    with pytest.raises(fid.InceptionWeightsError, match="not FID Inception weights"):
        fid.load_inception(tmp_path / "foreign.pth", torch.device("cpu"))


@pytest.mark.slow  # two Inception forward passes at 299 px
def test_inception_matches_torchvision_with_the_fid_pooling(monkeypatch) -> None:
    """Same parameter names and shapes as torchvision's Inception-v3 (1008 classes, no aux
    head), so the pt_inception file loads; and the same features as torchvision's network
    patched the way the FID graph differs (average pools excluding padding, a max pool in the
    last block), with identical random weights."""
    import torchvision.models.inception as tv_inception

    ours = FIDInception().eval()
    tv = tv_inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in tv.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, v in tv.state_dict().items():
        if k.endswith(("running_var", "bn.weight")):
            v = torch.rand(v.shape, generator=g) + 0.5
        elif v.is_floating_point():
            v = torch.randn(v.shape, generator=g) * (0.5 / v[0].numel() ** 0.5 if v.dim() > 1
                                                     else 0.1)
        state[k] = v
    ours.load_state_dict(state)
    tv.load_state_dict(state)

    in_last_block = [False]

    class FIDPooling:  # torchvision's module-level `F`, with the FID graph's pools
        def __getattr__(self, name: str):
            return getattr(F, name)

        @staticmethod
        def avg_pool2d(x, kernel_size, stride=None, padding=0, **_):
            if in_last_block[0]:
                return F.max_pool2d(x, kernel_size, stride, padding)
            return F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=False)

    monkeypatch.setattr(tv_inception, "F", FIDPooling())
    tv.Mixed_7c.register_forward_pre_hook(lambda *_: in_last_block.__setitem__(0, True))
    tv.Mixed_7c.register_forward_hook(lambda *_: in_last_block.__setitem__(0, False))
    pooled = {}
    tv.avgpool.register_forward_hook(lambda m, i, o: pooled.__setitem__("x", o.flatten(1)))
    x = torch.rand(1, 3, 40, 56, generator=g) * 2 - 1
    with torch.no_grad():
        features = ours(x)
        tv(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))
    assert features.shape == (1, FEATURES) and features.abs().max() > 0
    torch.testing.assert_close(features, pooled["x"], rtol=1e-4, atol=1e-5)
