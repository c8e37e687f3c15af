"""`train.resume=auto` over a run folder whose checkpoints all fail to load (truncated,
foreign, unsafe) refuses with one line naming each file, on every rank, and overwrites
nothing; with one good checkpoint left it resumes that one and warns about the rest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from liss import checkpoint
from liss.cli import main
from liss.config import ConfigError
from liss.distributed import DistEnv
from liss.train.resume import find_resume_state

REPO = Path(__file__).resolve().parents[2]
ENV1 = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class _Exploit:
    """Pickles as a call to os.system: what weights_only=True exists to refuse."""

    marker: Path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _good(run_dir: Path, step: int) -> Path:
    return checkpoint.save({"format": checkpoint.FORMAT, "step": step, "models": {}},
                           run_dir, keep=3)


def _broken_folder(run_dir: Path) -> list[Path]:
    """step_3 truncated (and latest.pt, its hard link), step_2 foreign, step_1 unsafe."""
    folder = checkpoint.checkpoint_dir(run_dir)
    truncated = _good(run_dir, 3)
    truncated.write_bytes(truncated.read_bytes()[:50])
    foreign, unsafe = folder / "step_2.pt", folder / "step_1.pt"
    torch.save({"a": 1}, foreign)
    _Exploit.marker = run_dir / "pwned"
    torch.save({"format": checkpoint.FORMAT, "step": 1, "models": {}, "x": _Exploit()}, unsafe)
    return [truncated, foreign, unsafe]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def test_all_broken_is_one_error_naming_every_file(tiny_config, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    truncated, foreign, unsafe = _broken_folder(run_dir)
    with pytest.raises(ConfigError) as caught:
        find_resume_state(tiny_config("train.resume=auto"), ENV1, run_dir)
    message = str(caught.value)
    assert message.startswith("train.resume='auto': no checkpoint in ") and "\n" not in message
    assert f"{truncated}: truncated or corrupt checkpoint" in message
    assert f"{foreign}: not a liss checkpoint" in message
    assert f"{unsafe}: unsafe checkpoint (its pickle needs posix.system" in message
    assert "latest.pt" not in message  # a hard link to step_3: not reported twice
    assert message.endswith("move them away or choose another run.name; to continue this "
                            "one, set train.resume to the path of a good copy")
    assert not _Exploit.marker.exists()


def test_never_still_refuses_and_a_path_still_resumes(tiny_config, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _broken_folder(run_dir)
    with pytest.raises(ConfigError, match=r"already holds checkpoints; use train\.resume=auto"):
        find_resume_state(tiny_config("train.resume=never"), ENV1, run_dir)
    copy = _good(tmp_path / "elsewhere", 7)
    path, state = find_resume_state(tiny_config(f"train.resume={copy}"), ENV1, run_dir)
    assert path == copy and state["step"] == 7


def test_newer_broken_one_is_skipped_with_a_warning(tiny_config, tmp_path: Path,
                                                    caplog) -> None:
    run_dir = tmp_path / "run"
    _good(run_dir, 1)
    newer = _good(run_dir, 2)
    newer.write_bytes(newer.read_bytes()[:50])
    path, state = find_resume_state(tiny_config(), ENV1, run_dir)
    assert path.name == "step_1.pt" and state["step"] == 1
    assert f"skipping checkpoint: {newer}: truncated or corrupt" in caplog.text


def test_a_lone_latest_is_resumed_or_refused(tiny_config, tmp_path: Path) -> None:
    """Step files deleted: `latest.pt` is still a checkpoint, not a folder to start afresh in."""
    run_dir = tmp_path / "run"
    _good(run_dir, 4).unlink()
    latest = checkpoint.checkpoint_dir(run_dir) / "latest.pt"
    path, state = find_resume_state(tiny_config(), ENV1, run_dir)
    assert path == latest and state["step"] == 4
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        find_resume_state(tiny_config("train.resume=never"), ENV1, run_dir)
    latest.write_bytes(latest.read_bytes()[:50])
    with pytest.raises(ConfigError, match=re.escape(f"{latest}: truncated or corrupt")):
        find_resume_state(tiny_config(), ENV1, run_dir)


@pytest.fixture(scope="module")
def corrupted_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[Path, list[str]]:
    """A finished 2-step tiny run whose every checkpoint file is then truncated, and the
    overrides that continue it to step 4. Refusing leaves it as it is, so tests share it."""
    from tests.conftest import TINY

    runs = tmp_path_factory.mktemp("runs")
    base = ["train", *TINY, f"data.root={synth_root}", f"run.dir={runs}", "run.name=tiny",
            "tracking.uri=none"]
    assert main([*base, "train.max_steps=2"]) == 0
    run_dir = runs / "tiny"
    for path in checkpoint.checkpoint_dir(run_dir).iterdir():
        path.write_bytes(path.read_bytes()[:100])
    return run_dir, [*base, "train.max_steps=4"]


def test_train_refuses_and_overwrites_nothing(corrupted_run: tuple[Path, list[str]],
                                              capsys) -> None:
    run_dir, argv = corrupted_run
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("liss: config error: train.resume='auto'")
    assert str(checkpoint.checkpoint_dir(run_dir) / "step_2.pt") in err
    assert _snapshot(run_dir) == before


@pytest.mark.slow
def test_every_rank_refuses_none_hangs(corrupted_run: tuple[Path, list[str]]) -> None:
    run_dir, argv = corrupted_run
    before = _snapshot(run_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "liss", *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert proc.stderr.count("liss: config error: train.resume='auto': no checkpoint") == 2
    assert _snapshot(run_dir) == before
