"""The learning-curve figure's pure parts: which identity baseline belongs to a metric, and
when it is drawn or only named (the curves' numbers: integration/test_sweep_report_e2e.py)."""

from __future__ import annotations

from launch.curves import identity_key, off_range


def test_identity_key_of_paired_metrics_only() -> None:
    assert identity_key("val/A2B_texture") == "val/A2B_identity_texture"
    assert identity_key("test/B2A_bg_psnr") == "test/B2A_identity_bg_psnr"
    assert identity_key("val/A2B_identity_texture") is None
    assert identity_key("val/A/rotation_acc") is None


def test_a_far_baseline_is_named_not_drawn() -> None:
    assert off_range(49.0, 22.0, 26.0) == "above"  # an untouched background vs ~24 dB
    assert off_range(0.27, 0.13, 0.30) is None  # texture: the identity within reach
    assert off_range(0.0, 0.5, 0.6) == "below"
    assert off_range(1.0, 1.0, 1.0) is None  # flat curves at the baseline itself
