"""Which checkpoint a run resumes from (`train.resume`), and whether it may.

Resuming continues *the same* experiment: the checkpoint's config must equal the current one
except for the keys in `RESUME_MUTABLE` (paths, logging, performance knobs, the step cap),
so a resumed run can be extended or moved but never silently turned into another one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liss import checkpoint
from liss import config as config_lib
from liss.config import Config, ConfigError
from liss.distributed import DistEnv

RESUME_MUTABLE = ("run.dir", "run.name", "data.root", "data.backend", "data.num_workers",
                  "data.on_bad_file", "train.", "tracking.")


def find_resume_state(cfg: Config, env: DistEnv,
                      run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The (path, state) to resume from, or None to start afresh, per `train.resume`:
    `auto` the newest valid checkpoint of `run_dir` (refusing a folder whose checkpoints all
    fail to load), `never` refuses a folder that has one, anything else is a checkpoint
    path."""
    mode = cfg.train.resume
    if mode == "never":
        if checkpoint.resumable(run_dir):
            raise ConfigError("train.resume", mode, f"{run_dir} already holds checkpoints; "
                              "use train.resume=auto to continue that run from the newest "
                              "one that loads, or choose another run.name")
        return None
    if mode == "auto":
        # rank 0 chooses, so every rank resumes from the same file even if one sees a
        # different set of files (a write in flight, a lagging network filesystem); it
        # sends its refusal the same way, so every rank raises it and none waits forever
        chosen, refusal = env.broadcast_object(_choose(run_dir) if env.is_main else None)
        if refusal:
            raise ConfigError("train.resume", mode, refusal)
        return (Path(chosen), checkpoint.load(Path(chosen), env.device)) if chosen else None
    path = Path(mode)
    try:
        return path, checkpoint.load(path, env.device)
    except checkpoint.CheckpointError as e:
        raise ConfigError("train.resume", mode, str(e)) from None


def _choose(run_dir: Path) -> tuple[str, str]:
    """(path of the checkpoint to resume, "") or ("", why none may be): plain strings, to
    broadcast."""
    try:
        found = checkpoint.newest_valid(run_dir)
    except checkpoint.CheckpointError as e:
        return "", (f"{e}. A fresh start would overwrite them: to start a new run, move "
                    "them away or choose another run.name; to continue this one, set "
                    "train.resume to the path of a good copy")
    return (str(found[0]) if found else ""), ""


def check_compatible(cfg: Config, saved: dict[str, Any], path: Path) -> None:
    """ConfigError naming every key where `saved` (a checkpoint's config) differs from `cfg`
    outside `RESUME_MUTABLE`."""
    try:
        old = config_lib.flatten(config_lib.from_dict(saved))
    except ConfigError as e:
        raise ConfigError("train.resume", str(path), f"checkpoint config is invalid: {e}"
                          ) from None
    new = config_lib.flatten(cfg)
    differ = [k for k in new if old.get(k) != new[k] and not k.startswith(RESUME_MUTABLE)]
    if differ:
        detail = ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in differ)
        raise ConfigError("train.resume", str(path), "checkpoint was trained with a "
                          f"different config: {detail}")
