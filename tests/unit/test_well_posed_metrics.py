"""The well-posed paired metrics on constructed cases rendered by the synthetic generator
itself: the perfect answer, the identity, the perfect answer with its stripes shifted by
half a period (what a perfect unpaired A->B can give at best), and a blurred truth."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import gaussian_blur

from liss.data import synthetic
from liss.data.augment import Preprocess, center_params
from liss.data.torch_backend import load_mask, load_sample
from liss.eval.paired import BACKGROUND, MAX_PSNR, image_scores, masked_psnr
from liss.eval.texture import texture_distance
from liss.paired_names import MASKED, well_posed
from liss.train.summary import format_summary

SIZE, SCENES = 64, range(6)


def tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)


def shifted(scene: synthetic.Scene) -> synthetic.Scene:
    """The scene with every object's stripes moved by half a period."""
    return dataclasses.replace(scene, things=tuple(
        dataclasses.replace(t, stripe_phase=t.stripe_phase + 0.5) for t in scene.things))


@pytest.fixture(scope="module")
def cases() -> dict[str, torch.Tensor]:
    """Batches over SCENES: plain input, striped truth, its half-period shift, masks."""
    plain, striped, shift, masks = [], [], [], []
    for i in SCENES:
        scene = synthetic.scene_for(0, "test", "A", i)
        rgb, _, mask = synthetic.render_scene(scene, "A", SIZE)
        plain.append(tensor(rgb))
        striped.append(tensor(synthetic.render_scene(scene, "B", SIZE)[0]))
        shift.append(tensor(synthetic.render_scene(shifted(scene), "B", SIZE)[0]))
        masks.append(torch.from_numpy(mask)[None].float())
    return {k: torch.stack(v) for k, v in
            (("plain", plain), ("striped", striped), ("shift", shift), ("masks", masks))}


def scores(pred: torch.Tensor, truth: torch.Tensor, source: torch.Tensor,
           masks: torch.Tensor) -> dict[str, float]:
    return {k: v.mean().item() for k, v in image_scores(pred, truth, source, masks).items()}


def test_adding_stripes_texture_calls_a_phase_shift_near_perfect_pixels_do_not(cases) -> None:
    plain, truth, masks = cases["plain"], cases["striped"], cases["masks"]
    perfect = scores(truth, truth, plain, masks)
    identity = scores(plain, truth, plain, masks)
    shift = scores(cases["shift"], truth, plain, masks)
    blur = scores(gaussian_blur(truth, [5, 5], [1.5, 1.5]), truth, plain, masks)
    assert perfect["texture"] == 0 and perfect["object_l1"] == 0
    assert perfect["bg_psnr"] == MAX_PSNR and perfect["bg_l1"] == 0
    assert identity["texture"] > 0.15
    assert shift["texture"] < 0.1 * identity["texture"]  # near-perfect
    assert blur["texture"] > 0.5 * identity["texture"]  # blurred stripes are not stripes
    # the pixel metric punishes the shifted perfect answer more than leaving the image alone
    assert shift["object_l1"] > identity["object_l1"] > 0.05
    # the background is the truth's in every case: only the objects were touched
    assert shift["bg_psnr"] == identity["bg_psnr"] == MAX_PSNR


def test_removing_stripes_is_well_posed_for_pixels(cases) -> None:
    striped, truth, masks = cases["striped"], cases["plain"], cases["masks"]
    perfect = scores(truth, truth, striped, masks)
    identity = scores(striped, truth, striped, masks)
    assert perfect["object_l1"] == perfect["texture"] == perfect["changed_l1"] == 0
    assert identity["object_l1"] > 0.05 and identity["texture"] > 0.15
    assert identity["changed_l1"] > identity["object_l1"]  # changed pixels: the dark stripes


def test_texture_is_symmetric_and_sees_a_wrong_colour(cases) -> None:
    truth, masks = cases["striped"], cases["masks"].bool()
    recoloured = truth[:, [2, 0, 1]]  # stripes kept, coat hues permuted
    assert texture_distance(recoloured, truth, masks).min() > 0.01
    torch.testing.assert_close(texture_distance(truth, recoloured, masks),
                               texture_distance(recoloured, truth, masks))


def test_object_scores_are_nan_without_object_pixels_and_masked_psnr_is_exact() -> None:
    truth = torch.full((2, 3, 8, 8), 0.5)
    pred = truth.clone()
    pred[0, :, :, :4] += 0.1  # image 0: error 0.1 on the left half
    coverage = torch.zeros(2, 1, 8, 8)
    coverage[1, :, 2:4, 2:4] = 1.0  # image 1 has an object, image 0 none
    s = image_scores(pred, truth, truth, coverage)
    assert set(MASKED) <= set(s)
    assert s["object_l1"][0].isnan() and s["texture"][0].isnan()
    assert s["object_l1"][1] == 0 and s["texture"][1] == 0
    assert s["bg_l1"][0].item() == pytest.approx(0.05)
    assert s["bg_psnr"][0].item() == pytest.approx(10 * np.log10(1 / 0.005), rel=1e-5)
    left = torch.zeros(1, 1, 8, 8)
    left[..., :4] = 1
    assert masked_psnr(pred[:1], truth[:1], left).item() == pytest.approx(20.0, rel=1e-5)
    assert masked_psnr(pred[:1], truth[:1], 1 - left).item() == MAX_PSNR


def test_masks_take_their_images_geometry(tmp_path: Path) -> None:
    """A mask through `load_mask` covers what its image shows, after resize and crop."""
    image = np.zeros((90, 120, 3), np.uint8)
    image[20:50, 70:110] = 255
    mask = (image[..., 0] > 0).astype(np.uint8) * 255
    Image.fromarray(image).save(tmp_path / "x.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    for prep in (Preprocess("resize_and_crop", 72, 64), Preprocess("crop", 72, 64),
                 Preprocess("none", 72, 64), Preprocess("scale_width_and_crop", 80, 64)):
        x = (load_sample(tmp_path / "x.png", False, prep, center_params)[0] + 1) / 2
        m = load_mask(tmp_path / "m.png", prep, center_params)
        assert m.shape == (1, *x.shape[1:]), prep
        assert ((m[0] > 0.5) != (x[0] > 0.5)).float().mean() < 0.01, prep  # same shape
        assert x[0][m[0] < BACKGROUND].max() < 0.02, prep  # "background" is background


def test_closing_report_names_the_well_posed_numbers_and_says_who_wins() -> None:
    test = {}
    for name, (score, ident) in (("A2B", (0.05, 0.30)), ("B2A", (0.15, 0.10))):
        key = well_posed(name)[0]
        test |= {f"test/{name}_bg_psnr": 28.0, f"test/{name}_identity_bg_psnr": 40.0,
                 f"test/{name}_texture": 0.3, f"test/{name}_identity_texture": 0.3,
                 f"test/{name}_{key}": score, f"test/{name}_identity_{key}": ident}
    text = format_summary({}, {}, test, [])
    a2b, b2a = (next(line for line in text.splitlines() if line.strip().startswith(n))
                for n in ("A2B", "B2A"))
    assert "background PSNR 28.0 dB (identity 40.0)" in a2b
    assert "object texture 0.0500 (identity 0.3000): beats the identity" in a2b
    assert "object L1 0.1500 (identity 0.1000): does not beat the identity yet" in b2a
    # data.direction=BtoA: config A2B is the dataset's B->A, whose objects are well-posed
    assert well_posed("A2B", "BtoA") == well_posed("B2A")
