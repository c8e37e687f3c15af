"""Trained generators from any file liss writes: a full-state checkpoint, `generators.pt`, or
an export of `liss export` (torch state dict, safetensors, TorchScript).

Directions are the dataset's: `AtoB` turns images like the dataset's A folders into B,
whatever `data.direction` the model was trained with (G_A translates config domain A, which
is the dataset's B under `data.direction=BtoA`). Translation needs the encoder and the
decoder only; task heads stay behind.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from liss import checkpoint
from liss import config as config_lib
from liss.config import Config, ConfigError

DIRECTIONS = ("AtoB", "BtoA")
TRANSLATION_KEYS = ("encoder.", "heads.decoder.")  # a generator's translation path
SAFETENSORS_FORMAT = "liss-generators"
TORCHSCRIPT_META = "liss.json"  # the extra file of a TorchScript export


class LoadError(RuntimeError):
    """An input of an inference or evaluation verb that cannot be used (a missing or foreign
    file, a missing dataset); the message is one line naming it and why."""


def model_domain(direction: str, trained_direction: str) -> str:
    """The config domain whose generator translates the dataset `direction`."""
    return "A" if direction == trained_direction else "B"


def directions_for(choice: str) -> tuple[str, ...]:
    """`both` -> (AtoB, BtoA); a single direction -> itself."""
    return DIRECTIONS if choice == "both" else (choice,)


def translation_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The encoder and decoder weights of a generator's state dict."""
    return {k: v for k, v in state.items() if k.startswith(TRANSLATION_KEYS)}


def build_translation_net(cfg: Config) -> nn.Module:
    """A generator with its decoder and no task heads, as `LissModel` builds it."""
    from liss.model import LissModel

    bare = config_lib.from_dict(cfg.to_dict())
    bare.tasks.auxiliary_tasks = []
    return LissModel(bare).G["A"]


class TranslationModule(nn.Module):
    """decoder(encoder(x)) with plain attributes: what TorchScript and ONNX export."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.encoder = generator.encoder
        self.decoder = generator.decoder

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


@dataclass
class Translator:
    """Generators ready to translate [N,3,H,W] images in [-1, 1], per dataset direction."""

    kind: str  # checkpoint | generators | safetensors | torchscript
    step: int
    nets: dict[str, nn.Module]  # direction -> network


# ---------------------------------------------------------------------- reading files


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in name for name in z.namelist())


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError:
        raise LoadError(f"{path}: reading safetensors needs the safetensors package "
                        "(pip install 'liss[export]')") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:
        raise LoadError(f"{path}: unreadable safetensors file ({e})") from None
    if meta.get("format") != SAFETENSORS_FORMAT:
        raise LoadError(f"{path}: not a liss generator export (no '{SAFETENSORS_FORMAT}' "
                        "metadata)")
    models: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        net, name = key.split(".", 1)
        models.setdefault(net, {})[name] = value
    return {"format": checkpoint.FORMAT, "kind": "safetensors", "step": int(meta["step"]),
            "config": json.loads(meta["config"]), "models": models}


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint-shaped dict (step, config, models{G_A, ...}) from a checkpoint,
    `generators.pt` or a state-dict / safetensors export. Loads no code."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"{path}: no such checkpoint")
    if path.suffix == ".onnx":
        raise LoadError(f"{path}: ONNX exports are for serving (onnxruntime); use the "
                        "checkpoint, generators.pt or a state_dict/safetensors export here")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if _is_torchscript(path):
        raise LoadError(f"{path}: a TorchScript export serves translation only; use the "
                        "checkpoint, generators.pt or a state_dict/safetensors export here")
    try:
        state = checkpoint.load(path)
    except checkpoint.CheckpointError as e:
        raise LoadError(str(e)) from None
    state.setdefault("kind", "checkpoint")
    return state


def config_of(state: dict[str, Any], path: Path) -> Config:
    try:
        return config_lib.from_dict(state["config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise LoadError(f"{path}: the config stored in it is invalid ({e})") from None


def generator_name(state: dict[str, Any], path: Path, direction: str) -> str:
    """`G_A` or `G_B`: the generator of `state` that translates the dataset `direction`."""
    trained = config_of(state, path).data.direction
    name = f"G_{model_domain(direction, trained)}"
    if name not in state["models"]:
        have = [d for d in DIRECTIONS if f"G_{model_domain(d, trained)}" in state["models"]]
        raise LoadError(f"{path}: has no generator for {direction} (it has "
                        f"{', '.join(have) or 'none'})")
    return name


def nets_from_state(state: dict[str, Any], path: Path, directions: Sequence[str],
                    device: torch.device) -> dict[str, nn.Module]:
    """Translation networks (generators without task heads) per direction, in eval mode."""
    cfg = config_of(state, path)
    nets = {}
    for direction in directions:
        name = generator_name(state, path, direction)
        net = build_translation_net(cfg)
        try:
            net.load_state_dict(translation_state(state["models"][name]))
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise LoadError(f"{path}: {name} does not fit its config ({first})") from None
        nets[direction] = net.to(device).eval()
    return nets


def _torchscript_nets(path: Path, directions: Sequence[str], device: torch.device
                      ) -> tuple[dict[str, Any], dict[str, nn.Module]]:
    extra = {TORCHSCRIPT_META: ""}
    try:
        net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        meta = json.loads(extra[TORCHSCRIPT_META])
    except Exception as e:
        raise LoadError(f"{path}: unreadable TorchScript export ({e})") from None
    if meta.get("direction") not in DIRECTIONS:
        raise LoadError(f"{path}: TorchScript file without liss metadata")
    missing = [d for d in directions if d != meta["direction"]]
    if missing:
        raise LoadError(f"{path}: exports {meta['direction']} only (asked for "
                        f"{', '.join(missing)})")
    return meta, {meta["direction"]: net.eval()}


def load_translator(path: Path, directions: Sequence[str], device: torch.device
                    ) -> Translator:
    """The generators for `directions` from any supported file, on `device`, in eval mode."""
    path = Path(path)
    if path.is_file() and path.suffix != ".safetensors" and _is_torchscript(path):
        meta, nets = _torchscript_nets(path, directions, device)
        return Translator("torchscript", int(meta.get("step", 0)), nets)
    state = read_state(path)
    return Translator(state["kind"], int(state["step"]),
                      nets_from_state(state, path, directions, device))
