"""Datasets: layout, decoding, checks, the input pipelines, and the depth-map verb.

Kept import-light: `liss --help` reads the `liss data depth` choices below without torch.
"""

DEPTH_OUTPUTS = ("inverse-depth", "depth")  # what a depth model's output means
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
