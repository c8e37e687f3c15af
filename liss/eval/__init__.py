"""Inference and evaluation: translate, export, paired-truth and FID/KID metrics, forgetting.

Kept import-light: `liss --help` reads EXPORT_FORMATS without loading torch.
"""

EXPORT_FORMATS = ("state_dict", "safetensors", "torchscript", "onnx")
