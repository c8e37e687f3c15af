"""Checkpoint files: atomic writes, keep-last-k, `latest.pt`, safe loading. File I/O only:
what a checkpoint holds is assembled by the trainer from each component's own `state_dict`
(docs/design.md, "Checkpoints"), and read back the same way.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
FORMAT = 2  # 2: per-side optimizer/scaler state (the DDP core); 1 had the same networks
READABLE_FORMATS = (1, 2)  # networks (what eval/translate/export read) are alike in both
STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # in torch's weights_only refusals


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(state: dict[str, Any], path: Path) -> Path:
    """torch.save to a hidden temp file, fsync, rename: a reader sees the old file or the
    new one, never half of one, whatever kills the writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save(state: dict[str, Any], run_dir: Path, keep: int) -> Path:
    """Write `step_<step>.pt` atomically, point `latest.pt` at it and delete all but the
    newest `keep` step checkpoints."""
    folder = checkpoint_dir(run_dir)
    path = write_atomic(state, folder / f"step_{state['step']}.pt")
    latest_tmp = folder / ".latest.pt.tmp"
    latest_tmp.unlink(missing_ok=True)
    os.link(path, latest_tmp)
    os.replace(latest_tmp, folder / "latest.pt")
    _fsync_dir(folder)
    for old in step_checkpoints(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


def step_checkpoints(run_dir: Path) -> list[Path]:
    """`step_*.pt` files, newest step first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _load_failure(e: Exception) -> str:
    """Why torch.load failed, in a few words: its own messages run to paragraphs (and, for
    an unsafe file, suggest `weights_only=False`), too long for a one-line error."""
    text = str(e).strip()
    if isinstance(e, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        found = UNSAFE_GLOBAL.search(text)
        needs = f"its pickle needs {found.group(1)}, " if found else ""
        return f"unsafe checkpoint ({needs}refused by weights_only=True)"
    if isinstance(e, OSError):
        return f"unreadable checkpoint ({e.strerror or text or type(e).__name__})"
    first = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(e).__name__
    return f"truncated or corrupt checkpoint ({first})"


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True`: a checkpoint is untrusted input and may not run code."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:
        raise CheckpointError(f"{path}: {_load_failure(e)}") from None
    if (not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS
            or "models" not in state):
        raise CheckpointError(f"{path}: not a liss checkpoint (format {FORMAT})")
    return state


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # one of them went meanwhile (pruned by a writer)
        return False


def resumable(run_dir: Path) -> list[Path]:
    """The checkpoints `train.resume=auto` tries, in order: step checkpoints newest first,
    then `latest.pt` unless it is a hard link to one of them (it is one, except when the step
    files were deleted or a copy broke the links), so a fresh start never overwrites it."""
    steps = step_checkpoints(run_dir)
    latest = checkpoint_dir(run_dir) / "latest.pt"
    if latest.is_file() and not any(_same_file(latest, p) for p in steps):
        return [*steps, latest]
    return steps


def newest_valid(run_dir: Path, map_location: str | torch.device = "cpu"
                 ) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of `resumable` that loads, warning about each newer one that
    does not; None when there is none at all. A folder whose checkpoints all fail is an
    error naming each file and its fault, not a fresh start that would overwrite them."""
    failures: list[str] = []
    for path in resumable(run_dir):
        try:
            state = load(path, map_location)
        except CheckpointError as e:
            failures.append(str(e))
            continue
        for failure in failures:
            log.warning("skipping checkpoint: %s", failure)
        return path, state
    if failures:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir(run_dir)} loads: "
                              + "; ".join(failures))
    return None
