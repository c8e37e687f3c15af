"""PSNR and SSIM of paired.py are torchmetrics' (per image, data range 1 for images in
[0, 1]), pinned on a constructed case against the values liss's own implementations gave
before torchmetrics replaced them: PSNR agrees; SSIM differs only at the borders, where
torchmetrics reflects the window instead of leaving the 5-pixel band out."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from liss.eval.paired import MAX_PSNR, psnr, ssim

# liss's former PSNR (10 log10(1 / MSE)) and SSIM (11x11 Gaussian window of sigma 1.5 over
# the valid region only) of `case()`, in float64
OLD_PSNR = (20.459079257463255, 20.722732890178747)
OLD_SSIM = (0.38961143088546474, 0.4097645726154115)
BORDER = 5  # the half window


def case() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 24x32 colour ramps (the second mirrored) and a noisy copy of each, in [0, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 32), indexing="ij")
    truth = torch.stack([xx, yy, (xx + yy) / 2])[None].repeat(2, 1, 1, 1)
    truth[1] = truth[1].flip(-1)
    g = torch.Generator().manual_seed(0)
    pred = (truth + 0.1 * torch.randn(truth.shape, generator=g)).clamp(0, 1)
    return pred.double(), truth.double()


def test_psnr_is_torchmetrics_per_image_and_agrees_with_the_old_values() -> None:
    pred, truth = case()
    ours = psnr(pred, truth)
    assert ours.shape == (2,)
    library = peak_signal_noise_ratio(pred, truth, data_range=1.0, reduction="none",
                                      dim=(1, 2, 3))
    torch.testing.assert_close(ours, library)
    assert ours.tolist() == pytest.approx(OLD_PSNR, rel=1e-6)
    # [-1, 1] images with data range 2 are the same numbers: the convention does not matter
    torch.testing.assert_close(peak_signal_noise_ratio(pred * 2 - 1, truth * 2 - 1,
                                                       data_range=2.0, reduction="none",
                                                       dim=(1, 2, 3)), ours)
    assert psnr(truth, truth).tolist() == [MAX_PSNR, MAX_PSNR]  # finite for identical images


def test_ssim_is_torchmetrics_and_differs_from_the_old_values_only_at_the_borders() -> None:
    pred, truth = case()
    ours = ssim(pred, truth)
    assert ours.shape == (2,)
    library, full = structural_similarity_index_measure(
        pred, truth, data_range=1.0, reduction="none", return_full_image=True)
    torch.testing.assert_close(ours, library)
    valid = full[..., BORDER:-BORDER, BORDER:-BORDER].flatten(1).mean(1)
    assert valid.tolist() == pytest.approx(OLD_SSIM, rel=1e-9)  # the old window, exactly
    difference = (ours - torch.tensor(OLD_SSIM, dtype=ours.dtype)).abs()
    assert (difference > 1e-3).all() and (difference < 1e-2).all()  # 24x32: 60% lies in the band
    assert ssim(truth, truth).tolist() == pytest.approx([1.0, 1.0])
