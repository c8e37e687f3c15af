"""Real processes on the CPU (gloo): DDP equivalence across phase changes, resume after
SIGTERM equals not stopping, kill -9 mid-write, extending and resuming real runs, clear
errors. (Unsafe and truncated checkpoints: unit/test_checkpoint.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from liss import checkpoint
from liss.train.signals import EXIT_PREEMPTED
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[2]
# sequential over depth and gray with thresholds that always pass: the phase changes at
# steps 2 and 4 (depth -> gray -> identity+translation)
# one thread per process everywhere: float reductions, hence bits, depend on the thread count
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PHASED = ["tracking.uri=none", "loss.pool_size=0", "schedule.task_schedule=sequential",
          "tasks.auxiliary_tasks=depth,gray", "schedule.depth_loss_threshold=5",
          "schedule.gray_loss_threshold=5"]


def liss_cmd(*args: str, nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "liss", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "liss", *args]


def run(*args: str, nproc: int = 1, timeout: float = 300,
        threads: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(liss_cmd(*args, nproc=nproc), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**ENV, "OMP_NUM_THREADS": str(threads)})


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    return {f"{net}.{k}": v for net, sd in state["models"].items() for k, v in sd.items()}


# (schedule, extra overrides, steps of its events): every schedule kind that moves, with
# its reference encoders and distillation where it has them
SCHEDULE_WALKS = {
    "sequential": ([], [0, 2, 4]),
    "liss": (["schedule.task_schedule=liss"], [0, 2, 4]),  # reference + distillation
    "representational": (["schedule.task_schedule=representational",
                          "schedule.repr_mode=distillation"], [0, 2]),
}


@pytest.mark.slow
@pytest.mark.parametrize("schedule", list(SCHEDULE_WALKS))
def test_two_ranks_of_batch_one_equal_one_rank_of_batch_two(tiny_overrides, tmp_path,
                                                            schedule) -> None:
    extra, event_steps = SCHEDULE_WALKS[schedule]
    common = ["train", *tiny_overrides, *PHASED, *extra, "train.max_steps=6",
              "train.val_every=2"]
    one = run(*common, "run.name=one")
    two = run(*common, "run.name=two", nproc=2)
    # the float noise floor: the same single process with two threads (another summation
    # order); some walks amplify it (tiny instance-normed maps), 2 ranks may not add more
    noise = run(*common, "run.name=noise", threads=2)
    for proc in (one, two, noise):
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = tmp_path / "runs"
    a, b = weights(runs / "one"), weights(runs / "two")
    init = weights_at_init(tiny_overrides)
    assert a.keys() == b.keys()
    drift, floor = max_difference(a, b), max_difference(a, weights(runs / "noise"))
    moved = max_difference(init, a)  # E_*_ref exist only once a schedule made them
    print(f"{schedule}: max parameter difference 2x1 vs 1x2 {drift:.2e}, 1 vs 2 threads "
          f"{floor:.2e}, moved {moved:.2e}")
    assert drift <= max(5e-5, 3 * floor) and moved > 10 * drift, (drift, floor, moved)
    events = {}
    for name in ("one", "two"):  # both crossed the same phase changes
        state = checkpoint.load(runs / name / "checkpoints" / "latest.pt")
        events[name] = state["schedule"]["events"]
        assert [e["step"] for e in events[name]] == event_steps
    # the validation metrics behind each switch, pooled over ranks as sums and counts (one
    # validation image per domain: rank 1's shard is empty), match the single process's
    for mine, theirs in zip(events["one"][1:], events["two"][1:], strict=True):
        assert mine["metrics"] and mine["metrics"].keys() == theirs["metrics"].keys()
        for key, value in mine["metrics"].items():
            assert theirs["metrics"][key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
    assert "identity+translation" in two.stderr


@pytest.mark.slow
def test_one_process_under_torchrun_equals_a_plain_run(tiny_overrides, tmp_path) -> None:
    """torchrun with one process wraps the steps in DDP (a gloo group of one); a plain
    `liss train` runs them unwrapped: the same code path, bit for bit the same run."""
    common = ["train", *tiny_overrides, *PHASED, "train.max_steps=6", "train.val_every=2"]
    plain = run(*common, "run.name=plain")
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
         "-m", "liss", *common, "run.name=ddp"], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=ENV)
    assert plain.returncode == 0 and launched.returncode == 0, launched.stderr[-3000:]
    a, b = weights(tmp_path / "runs" / "plain"), weights(tmp_path / "runs" / "ddp")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_batch_norm_buffers_are_equal_on_both_ranks(tiny_overrides, tmp_path) -> None:
    """model.norm=batch: DDP broadcasts rank 0's running statistics at each forward, and
    validation and checkpoints sync them first, so both ranks end with the same buffers."""
    script = Path(__file__).resolve().parent / "rank_buffers.py"
    overrides = [*tiny_overrides, *PHASED, "model.norm=batch", "data.batch_size=4",
                 "train.max_steps=5", "train.val_every=2"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script), str(tmp_path), *overrides],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"buffers_{r}.pt") for r in (0, 1))
    stats = [k for k in rank0 if k.endswith("running_mean")]
    assert stats and rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert any(rank0[k].abs().sum() > 0 for k in stats)  # the statistics did move


@pytest.mark.slow
def test_two_ranks_resume_each_ranks_own_pools_and_rng(tiny_overrides, tmp_path) -> None:
    """2 ranks, stopped at step 3 and extended to 6, equal 2 ranks run to 6 bit for bit: each
    rank gets back its own image pools (small, so their random swaps matter) and RNG."""
    common = ["train", *tiny_overrides, *PHASED, "schedule.task_schedule=parallel",
              "loss.pool_size=2", "train.val_every=2"]  # translation, so pools, from step 0
    straight = run(*common, "run.name=straight", "train.max_steps=6", nproc=2)
    assert straight.returncode == 0, straight.stderr[-3000:]
    for steps in (3, 6):
        cut = run(*common, "run.name=cut", f"train.max_steps={steps}", nproc=2)
        assert cut.returncode == 0, cut.stderr[-3000:]
    runs = tmp_path / "runs"
    a, b = weights(runs / "straight"), weights(runs / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed 2-rank run differs"
    ranks = checkpoint.load(runs / "cut" / "checkpoints" / "latest.pt")["ranks"]
    assert len(ranks) == 2
    assert not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])


def weights_at_init(overrides: list[str]) -> dict[str, torch.Tensor]:
    from liss import config
    from liss.model import LissModel

    torch.manual_seed(0)
    model = LissModel(config.load(None, [*overrides, *PHASED]))
    return {f"{net}.{k}": v for net, m in model.networks().items()
            for k, v in m.state_dict().items()}


# phase changes at steps 5 and 10; the run is long enough that the signal lands mid-run
SIGTERMED = [*PHASED, "train.max_steps=30", "train.val_every=5", "train.log_every=1",
             "loss.pool_size=3", "model.D_rotation=true"]


@pytest.fixture(scope="module")
def uninterrupted(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 30-step run every SIGTERM case below must end up equal to, trained once."""
    runs = tmp_path_factory.mktemp("uninterrupted")
    full = run("train", *TINY, f"data.root={synth_root}", f"run.dir={runs}", "run.name=full",
               *SIGTERMED)
    assert full.returncode == 0, full.stderr[-3000:]
    return runs / "full"


# a fixed set, not a step drawn from the clock: before the first phase change (3), at each
# validation that switches (5, 10) and between them (7)
@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [3, 5, 7, 10], ids=lambda s: f"step{s}")
def test_resume_after_sigterm_equals_the_uninterrupted_run(tiny_overrides, tmp_path,
                                                           uninterrupted: Path,
                                                           stop_after: int) -> None:
    common = ["train", *tiny_overrides, *SIGTERMED]
    proc = subprocess.Popen(liss_cmd(*common, "run.name=cut"), cwd=REPO, text=True, env=ENV,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for line in proc.stderr:
        if line.startswith(f"step {stop_after}/"):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == EXIT_PREEMPTED, rest[-3000:]
    cut_dir = tmp_path / "runs" / "cut"
    stopped_at = checkpoint.load(cut_dir / "checkpoints" / "latest.pt")["step"]
    assert stop_after <= stopped_at < 30
    assert "preempted at step" in rest

    resumed = run(*common, "run.name=cut", "train.resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {cut_dir / 'checkpoints' / f'step_{stopped_at}.pt'}" in resumed.stderr
    a, b = weights(uninterrupted), weights(cut_dir)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the full run"
    fa = checkpoint.load(uninterrupted / "checkpoints" / "latest.pt")
    fb = checkpoint.load(cut_dir / "checkpoints" / "latest.pt")
    assert fa["schedule"] == fb["schedule"]
    (pa,), (pb,) = fa["ranks"], fb["ranks"]
    assert all(torch.equal(x, y) for x, y in zip(pa["pools"]["A"]["images"],
                                                 pb["pools"]["A"]["images"], strict=True))


@pytest.mark.slow
def test_two_ranks_stopped_by_sigterm_resume_to_the_uninterrupted_run(tiny_overrides,
                                                                        tmp_path) -> None:
    """SIGTERM to torchrun mid-run: it relays the signal, both ranks agree to stop after the
    same step, checkpoint (each rank's pools and RNG) and exit 75; resumed under torchrun,
    the run equals the 2-rank run that was never stopped, bit for bit."""
    common = ["train", *tiny_overrides, *SIGTERMED]
    full = run(*common, "run.name=full", nproc=2)
    assert full.returncode == 0, full.stderr[-3000:]
    proc = subprocess.Popen(liss_cmd(*common, "run.name=cut", nproc=2), cwd=REPO, text=True,
                            env=ENV, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for line in proc.stderr:
        if line.startswith("step 7/"):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) != 0 and "preempted at step" in rest, rest[-3000:]
    cut_dir = tmp_path / "runs" / "cut"
    stopped_at = checkpoint.load(cut_dir / "checkpoints" / "latest.pt")["step"]
    assert 7 <= stopped_at < 30
    resumed = run(*common, "run.name=cut", nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {cut_dir / 'checkpoints' / f'step_{stopped_at}.pt'}" in resumed.stderr
    a, b = weights(tmp_path / "runs" / "full"), weights(cut_dir)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed 2-rank run differs"
    fa = checkpoint.load(tmp_path / "runs" / "full" / "checkpoints" / "latest.pt")
    fb = checkpoint.load(cut_dir / "checkpoints" / "latest.pt")
    assert fa["schedule"] == fb["schedule"] and len(fb["ranks"]) == 2
    for ra, rb in zip(fa["ranks"], fb["ranks"], strict=True):  # each rank's own pools
        for d in "AB":
            assert all(torch.equal(x, y) for x, y in zip(ra["pools"][d]["images"],
                                                         rb["pools"][d]["images"], strict=True))


def test_extending_a_finished_run(tiny_overrides, tmp_path) -> None:
    from liss.cli import main

    base = ["train", *tiny_overrides, "tracking.uri=none", "tasks.auxiliary_tasks=rotation"]
    assert main([*base, "train.max_steps=2"]) == 0
    assert main([*base, "train.max_steps=2"]) == 0  # already complete: nothing to do
    assert main([*base, "train.max_steps=4"]) == 0
    assert checkpoint.load(tmp_path / "runs" / "tiny" / "checkpoints" / "latest.pt")[
        "step"] == 4


def test_resume_refuses_an_incompatible_config(tiny_overrides, capsys) -> None:
    from liss.cli import main

    base = ["train", *tiny_overrides, "tracking.uri=none", "tasks.auxiliary_tasks=rotation",
            "train.max_steps=2"]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "model.ngf=8", "optim.lr=0.001", "train.max_steps=4"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "model.ngf (4 -> 8)" in err
    assert "optim.lr (0.0002 -> 0.001)" in err and "train.max_steps" not in err


def test_resume_never_refuses_a_folder_with_checkpoints(tiny_overrides, capsys) -> None:
    from liss.cli import main

    base = ["train", *tiny_overrides, "tracking.uri=none", "tasks.auxiliary_tasks=rotation",
            "train.max_steps=2"]
    assert main(base) == 0
    assert main([*base, "train.resume=never"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_kill_9_during_a_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    script = f"""
import sys, torch
from pathlib import Path
from liss import checkpoint
run = Path({str(tmp_path)!r})
small = {{"format": checkpoint.FORMAT, "step": 1, "models": {{"G_A": {{"w": torch.ones(3)}}}}}}
checkpoint.save(small, run, keep=3)
print("first saved", flush=True)
blob = torch.zeros(400_000_000, dtype=torch.uint8)
big = {{"format": checkpoint.FORMAT, "step": 2, "models": {{"G_A": {{"w": blob}}}}}}
checkpoint.save(big, run, keep=3)
print("second saved", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "first saved"
    tmp_file = tmp_path / "checkpoints" / ".step_2.pt.tmp"
    deadline = time.monotonic() + 60
    while not (tmp_file.exists() and tmp_file.stat().st_size > 0):
        assert time.monotonic() < deadline, "the second write never started"
        time.sleep(0.005)
    proc.kill()  # SIGKILL in the middle of writing step_2
    proc.wait()
    assert not (tmp_path / "checkpoints" / "step_2.pt").exists()
    path, state = checkpoint.newest_valid(tmp_path)
    assert path.name == "step_1.pt" and state["step"] == 1
    assert checkpoint.load(tmp_path / "checkpoints" / "latest.pt")["step"] == 1


def test_world_size_must_divide_the_batch(tiny_overrides) -> None:
    proc = run("train", *tiny_overrides, "tracking.uri=none", "data.batch_size=3", nproc=2)
    assert proc.returncode != 0
    assert "data.batch_size=3: must be divisible by the world size (2)" in proc.stderr


def test_a_second_signal_exits_at_once() -> None:
    """The first signal asks for a checkpoint at the end of the step; a second one (an
    impatient scheduler, a user's second Ctrl-C equivalent) exits immediately with 75."""
    code = ("import os, signal, time\n"
            "from liss.train.signals import PreemptionHandler\n"
            "with PreemptionHandler() as handler:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    assert handler.requested\n"
            "    os.kill(os.getpid(), signal.SIGUSR1)\n"
            "    time.sleep(60)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr
    assert "SIGTERM received: finishing the step" in proc.stderr
    assert "second signal SIGUSR1: exiting now" in proc.stderr
