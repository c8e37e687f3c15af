"""A monocular depth model from a file the user supplies: TorchScript or ONNX.

Nothing is downloaded: `liss data depth` runs whatever model the user exported (MiDaS, DPT,
Depth Anything, a metric model ...). The model takes one input, a normalised RGB batch
[N,3,S,S], and returns [N,1,H',W'] or [N,H',W']; `DepthModel.__call__` checks that shape, so
the caller always gets [N,H',W'] float32. Every problem with the file is a `DepthModelError`
whose one line names the file and what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from liss.config import ConfigError

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit")
ONNX_SUFFIXES = (".onnx",)
ONNX_INSTALL_HINT = "pip install 'liss[export]', or pip install onnxruntime"
EXPECTED_OUTPUT = "one tensor [N,1,H,W] or [N,H,W]"
_ONNX_FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class DepthModelError(RuntimeError):
    """A `--model` file that cannot be used; the message names the file and what was expected."""


@dataclass
class DepthModel:
    """A loaded model: `model(x)` with x [N,3,S,S] on `device` -> [N,H',W'] float32."""

    path: Path
    kind: str  # torchscript | onnx
    device: torch.device  # where inputs go (ONNX: the CPU; onnxruntime moves them itself)
    where: str  # what runs it, for the summary: "cpu", "cuda", "CPUExecutionProvider" ...
    run: Callable[[Tensor], Any]
    fixed_batch: int | None = None  # an ONNX input with a static batch dimension
    fixed_size: tuple[int, int] | None = None  # ... or static height and width

    def __call__(self, x: Tensor) -> Tensor:
        try:
            with torch.inference_mode():
                out = self.run(x)
        except Exception as e:  # whatever the model raises: its input does not suit it
            raise DepthModelError(f"{self.path}: the model failed on an input of shape "
                                  f"{list(x.shape)} ({_first_line(e)})") from None
        return checked_output(out, len(x), self.path)


def checked_output(out: Any, n: int, path: Path) -> Tensor:
    """The model's output as [N,H',W'] float32; DepthModelError when it has another shape."""
    if not isinstance(out, Tensor):
        raise DepthModelError(f"{path}: the model returned {type(out).__name__}; expected "
                              f"{EXPECTED_OUTPUT}")
    if out.dim() == 4 and out.shape[1] == 1:
        out = out[:, 0]
    if out.dim() != 3 or out.shape[0] != n or out.shape[1] < 1 or out.shape[2] < 1:
        raise DepthModelError(f"{path}: the model returned shape {list(out.shape)} for a batch "
                              f"of {n}; expected {EXPECTED_OUTPUT} with N = {n}")
    return out.float()


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when there is one, else cpu; `cuda` without one is a ConfigError."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError("--device", name, "one of auto, cpu, cuda")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "cuda", "no CUDA device is available here")
    return torch.device(name)


def load_depth_model(path: Path, device: str = "auto") -> DepthModel:
    """The model in `path` (by suffix: TorchScript or ONNX), ready to run on `device`."""
    path = Path(path)
    if not path.is_file():
        raise DepthModelError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return _load_onnx(path, device)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return _load_torchscript(path, resolve_device(device))
    raise DepthModelError(f"{path}: unknown model format; expected a TorchScript file "
                          f"({', '.join(TORCHSCRIPT_SUFFIXES)}) or an ONNX file (.onnx)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _load_torchscript(path: Path, device: torch.device) -> DepthModel:
    try:
        with warnings.catch_warnings():  # torch.jit is deprecated; it still loads
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location=device)
    except Exception as e:
        raise DepthModelError(f"{path}: not a TorchScript module (torch.jit.load: "
                              f"{_first_line(e)}); export the model with torch.jit.trace or "
                              "torch.jit.script, or use an ONNX file") from None
    net.eval()
    return DepthModel(path, "torchscript", device, device.type, net)


def _onnx_providers(ort: Any, device: str) -> list[str]:
    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError("--device", device, "one of auto, cpu, cuda")
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ConfigError("--device", "cuda", "this onnxruntime has no CUDAExecutionProvider "
                          "(pip install onnxruntime-gpu)")
    use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else [
        "CPUExecutionProvider"]


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _load_onnx(path: Path, device: str) -> DepthModel:
    try:
        import onnxruntime as ort
    except ImportError:
        raise DepthModelError(f"{path}: running an ONNX model needs onnxruntime "
                              f"({ONNX_INSTALL_HINT})") from None
    providers = _onnx_providers(ort, device)
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as e:
        raise DepthModelError(f"{path}: not a readable ONNX model ({_first_line(e)})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or _static(inputs[0].shape[1]) not in (
            3, None):
        got = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise DepthModelError(f"{path}: the model's inputs are {got}; expected one image batch "
                              "[N,3,H,W]")
    image = inputs[0]
    dtype = _ONNX_FLOATS.get(image.type)
    if dtype is None:
        raise DepthModelError(f"{path}: the model's input is {image.type}; expected "
                              "tensor(float) or tensor(float16)")

    def run(x: Tensor) -> Tensor:
        out = session.run(None, {image.name: x.cpu().numpy().astype(dtype)})[0]
        return torch.from_numpy(np.asarray(out))

    n, _, h, w = (_static(d) for d in image.shape)
    return DepthModel(path, "onnx", torch.device("cpu"), session.get_providers()[0], run,
                      fixed_batch=n, fixed_size=(h, w) if h and w else None)
