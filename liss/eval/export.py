"""`liss export`: the translation weights of a run, alone, for inference and serving.

* `state_dict` — a torch file shaped like `generators.pt` (step, config, models{G_A, G_B})
  holding only the encoder and decoder of each exported generator; `checkpoint.load` reads it.
* `safetensors` — the same tensors as `G_A.encoder...` keys, with step and config as metadata.
* `torchscript` / `onnx` — one file per direction (`NAME.AtoB.pt`, `NAME.BtoA.onnx` for
  `--direction both`) taking [N,3,H,W] float in [-1, 1], H and W multiples of 4 (at least 8),
  batch and sides dynamic. `liss translate` pads any image to that; a server must too.

The first two and TorchScript load back into `liss translate` with identical outputs.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liss import checkpoint
from liss.eval import EXPORT_FORMATS
from liss.eval.generators import (
    SAFETENSORS_FORMAT,
    TORCHSCRIPT_META,
    LoadError,
    TranslationModule,
    generator_name,
    nets_from_state,
    read_state,
    translation_state,
)

FORMATS = EXPORT_FORMATS
EXAMPLE_SIDE = 64  # the traced example input of the ONNX export


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _per_direction(path: Path, directions: Sequence[str]) -> dict[str, Path]:
    if len(directions) == 1:
        return {directions[0]: path}
    return {d: path.with_name(f"{path.stem}.{d}{path.suffix}") for d in directions}


def _weights(state: dict[str, Any], directions: Sequence[str], path: Path
             ) -> dict[str, dict[str, torch.Tensor]]:
    names = [generator_name(state, path, d) for d in directions]
    return {name: {k: v.detach().cpu().contiguous()
                   for k, v in translation_state(state["models"][name]).items()}
            for name in names}


def _save_state_dict(state: dict[str, Any], models: dict, out: Path) -> list[Path]:
    data = {"format": checkpoint.FORMAT, "kind": "generators", "step": int(state["step"]),
            "config": state["config"], "models": models}
    _atomic(out, lambda tmp: torch.save(data, tmp))
    return [out]


def _save_safetensors(state: dict[str, Any], models: dict, out: Path) -> list[Path]:
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise LoadError("--format safetensors needs the safetensors package "
                        "(pip install 'liss[export]')") from None
    flat = {f"{net}.{k}": v for net, weights in models.items() for k, v in weights.items()}
    meta = {"format": SAFETENSORS_FORMAT, "step": str(int(state["step"])),
            "config": json.dumps(state["config"])}
    _atomic(out, lambda tmp: save_file(flat, str(tmp), metadata=meta))
    return [out]


def _serving_module(state: dict[str, Any], path: Path, direction: str) -> nn.Module:
    (net,) = nets_from_state(state, path, [direction], torch.device("cpu")).values()
    return TranslationModule(net).eval()


def _write_torchscript(module: nn.Module, meta: dict[str, Any], tmp: Path) -> None:
    with warnings.catch_warnings():  # torch.jit is deprecated; it still serves
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(module)
    scripted.save(str(tmp), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})


def _write_onnx(module: nn.Module, meta: dict[str, Any], tmp: Path) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx needs it, and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        raise LoadError("--format onnx needs the onnx and onnxscript packages "
                        "(pip install 'liss[export]')") from None
    from torch.export import Dim

    example = torch.zeros(1, 3, EXAMPLE_SIDE, EXAMPLE_SIDE)
    shapes = ({0: Dim("batch"), 2: Dim("height", min=8), 3: Dim("width", min=8)},)
    program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=shapes,
                                input_names=["image"], output_names=["translated"],
                                verbose=False)
    program.model.metadata_props.update({f"liss.{k}": v if isinstance(v, str) else
                                         json.dumps(v) for k, v in meta.items()})
    program.save(str(tmp))


def _save_per_direction(state: dict[str, Any], path: Path, directions: Sequence[str],
                        out: Path, write: Callable[[nn.Module, dict, Path], None]
                        ) -> list[Path]:
    written = []
    for d, target in _per_direction(out, directions).items():
        meta = {"direction": d, "step": int(state["step"]), "config": state["config"]}
        _atomic(target, partial(write, _serving_module(state, path, d), meta))
        written.append(target)
    return written


def export(path: Path, out: Path, fmt: str, directions: Sequence[str]) -> list[Path]:
    """Write the export; returns the files written."""
    if fmt not in FORMATS:
        raise LoadError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    state = read_state(path)
    if fmt == "state_dict":
        return _save_state_dict(state, _weights(state, directions, path), out)
    if fmt == "safetensors":
        return _save_safetensors(state, _weights(state, directions, path), out)
    write = _write_torchscript if fmt == "torchscript" else _write_onnx
    return _save_per_direction(state, path, directions, out, write)
