"""FID/KID through torch-fidelity: liss's features and scores equal `calculate_metrics` on
the same uint8 images (stand-in extractor, sets of unequal size so that KID's random subsets
matter), image folders decode and batch as torch-fidelity reads them, and the weights file:
missing, wrong hash, a file laid out like pt_inception loading into torch-fidelity's
Inception."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from liss.data.images import BadImageError
from liss.eval import fid
from tests.feature_standin import StandinFeatures, fidelity_metrics

CPU = torch.device("cpu")


class Images(Dataset):
    """uint8 [3,H,W] images, as torch-fidelity takes a Dataset input."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def image_set(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """n smooth random uint8 [3,20,28] images (a low-resolution noise field, upsampled)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 5, 7, generator=g) + shift
    x = torch.nn.functional.interpolate(low, size=(20, 28), mode="bilinear")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def test_scores_equal_torch_fidelity_on_the_same_images() -> None:
    """30 generated against 22 real images: KID's subsets (22 images) are drawn at random
    from the generated set, so this also checks the order and the seed liss hands over."""
    fake, real = image_set(30, seed=1, shift=0.2), image_set(22, seed=2)
    extractor = StandinFeatures()
    ours = fid.scores(fid.features(extractor, fake.split(7), CPU),
                      fid.features(extractor, real.split(5), CPU))
    theirs = fidelity_metrics(Images(fake), Images(real), kid_subset_size=22)
    assert ours["fid"] > 1 and ours["kid"] > 0 and ours["kid_std"] > 0
    for key in ("fid", "kid", "kid_std"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-4), key
    shuffled = fid.scores(fid.features(extractor, fake.flip(0).split(7), CPU),
                          fid.features(extractor, real.split(5), CPU))
    assert shuffled["fid"] == pytest.approx(ours["fid"], rel=1e-6)
    assert shuffled["kid"] != pytest.approx(ours["kid"], rel=1e-6)  # other subsets drawn


def test_sets_of_one_distribution_score_near_zero_a_shifted_one_far() -> None:
    """FID of a set against itself is 0; two draws of one distribution are far closer than
    a shifted one, for FID and for KID (unbiased, so near 0 and possibly negative)."""
    extractor = StandinFeatures()
    a, b, c = (fid.features(extractor, [image_set(40, seed, shift)], CPU)
               for seed, shift in ((3, 0.0), (4, 0.0), (5, 0.3)))
    assert fid.scores(a, a.clone())["fid"] == pytest.approx(0.0, abs=1e-6)
    near, far = fid.scores(a, b), fid.scores(a, c)
    assert 0 < near["fid"] < far["fid"] / 100 and abs(near["kid"]) < far["kid"] / 100
    with pytest.raises(ValueError, match="at least 2 images"):
        fid.scores(a[:1], b)


def test_folders_decode_and_batch_like_torch_fidelity(tmp_path: Path) -> None:
    """Files become uint8 RGB as torch-fidelity decodes a folder (PIL, RGBA and gray to
    RGB); consecutive images of one size share a batch, a new size starts one; the order
    is by real path, as torch-fidelity globs."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for h, w in ((8, 12), (8, 12), (8, 12), (10, 6))]
    files = []
    for i, a in enumerate(arrays):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(a).save(files[-1])
    Image.fromarray(arrays[0][..., 0]).save(tmp_path / "gray.png")
    batches = list(fid.file_batches(files, batch_size=2))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 8, 12), (1, 3, 8, 12), (1, 3, 10, 6)]
    assert all(b.dtype == torch.uint8 for b in batches)
    torch.testing.assert_close(batches[0][1], torch.from_numpy(arrays[1]).permute(2, 0, 1))
    (gray,) = fid.file_batches([tmp_path / "gray.png"], 4)
    assert gray.shape == (1, 3, 8, 12) and torch.equal(gray[0, 0], gray[0, 2])

    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(BadImageError, match=r"bad\.png: cannot decode"):
        list(fid.file_batches([tmp_path / "bad.png"], 4))

    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "a.png").symlink_to(files[3])  # a's real path sorts last
    (tmp_path / "links" / "b.png").symlink_to(files[0])
    ordered = fid.protocol_order(sorted((tmp_path / "links").iterdir()))
    assert [os.path.realpath(p) for p in ordered] == [str(files[0]), str(files[3])]


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


def test_a_file_laid_out_like_pt_inception_loads_into_torch_fidelity(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """pytorch-fid's port is torchvision's Inception-v3 state dict (1008 classes, no aux
    head, no num_batches_tracked): such a file passes the hash check it is given and loads
    strictly into torch-fidelity's extractor, which takes uint8 images of any size to 2048
    features; a foreign state dict does not load."""
    from torchvision.models.inception import Inception3

    monkeypatch.delenv(fid.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = fid.default_location()
    path.parent.mkdir(parents=True)
    net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    torch.save({k: v for k, v in net.state_dict().items()
                if not k.endswith("num_batches_tracked")}, path)
    monkeypatch.setattr(fid, "WEIGHTS_SHA256", fid.sha256(path))
    assert fid.resolve_weights(None) == path
    extractor = fid.load_inception(path, CPU)
    assert not extractor.training
    features = fid.features(extractor, [torch.zeros(1, 3, 40, 56, dtype=torch.uint8)], CPU)
    assert features.shape == (1, 2048) and features.dtype == torch.float32
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "foreign.pth")
    with pytest.raises(fid.InceptionWeightsError, match="not FID Inception weights"):
        fid.load_inception(tmp_path / "foreign.pth", CPU)
