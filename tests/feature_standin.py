"""A stand-in for the FID Inception, shared by unit/test_fid.py and integration/test_eval.py:
a tiny convolutional feature network with fixed seeded weights, written against
torch-fidelity's `FeatureExtractorBase`, so that the same class can be handed to liss (an
instance) and to `torch_fidelity.calculate_metrics` (registered by name), the way the real
Inception is. Like the Inception it takes uint8 images of any size and resizes them to one
input size. Not a test module: nothing here is collected."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

NAME = "liss-test-standin"
LAYER = "8"  # feature count: below the test sets' sizes, so covariances have full rank
SIDE = 24  # every image is resized to SIDE x SIDE, as the Inception resizes to 299


class StandinFeatures(FeatureExtractorBase):
    """uint8 [N,3,H,W] -> ([N,8] float32,): resize, a seeded 3x3 convolution, ReLU, 2x2
    average pool, a seeded linear map."""

    def __init__(self, name: str = NAME, features_list: list[str] | None = None, **_: object):
        super().__init__(name, features_list or [LAYER])
        g = torch.Generator().manual_seed(1234)
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.head = nn.Linear(6 * 4, int(LAYER))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> tuple[Tensor]:
        assert x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3, (x.dtype, x.shape)
        x = F.interpolate(x.float() / 127.5 - 1, size=(SIDE, SIDE), mode="bilinear",
                          align_corners=False)
        x = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 2).flatten(1)
        return (self.head(x),)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (LAYER,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return LAYER

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 3, SIDE, SIDE, dtype=torch.uint8)


def registered() -> str:
    """The stand-in's name, registered with torch-fidelity (once per process)."""
    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(NAME, StandinFeatures)
    return NAME


def fidelity_metrics(input1: object, input2: object, kid_subset_size: int) -> dict[str, float]:
    """torch-fidelity's own FID and KID of two inputs (folders or Datasets) through the
    registered stand-in, on the CPU, with nothing cached."""
    import torch_fidelity

    m = torch_fidelity.calculate_metrics(
        input1=input1, input2=input2, fid=True, kid=True, feature_extractor=registered(),
        kid_subset_size=kid_subset_size, cuda=False, cache=False, save_cpu_ram=True,
        verbose=False)
    return {"fid": m["frechet_inception_distance"],
            "kid": m["kernel_inception_distance_mean"],
            "kid_std": m["kernel_inception_distance_std"]}
