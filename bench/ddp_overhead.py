"""Cost of torch DDP: the training step at world size 1 vs N, same per-rank batch (weak
scaling), one thread per process, gloo on CPU / NCCL on CUDA.

    python bench/ddp_overhead.py                 # 1 vs 2 processes on this machine
    python bench/ddp_overhead.py --nproc 8 --size 256 --batch 8 --ngf 64 --device cuda

Three children, one after the other: world size 1 with no process group (a plain
`liss train`: the step modules unwrapped), world size 1 under torchrun (DDP over a group of
one) and world size N under torchrun (DDP). Under DDP the steps alternate between two kinds:
with the gradient all-reduce, and inside `no_sync()` on both sides' DDP wrappers, which skips
the all-reduce and keeps everything else (forward, backward, optimizer steps, buffer
broadcast). The difference is the EXPOSED communication: the all-reduce time the
backward did not hide, plus the wait for the slower rank that the all-reduce imposes; the
table gives the median over the step pairs of (sync - no_sync), each sync step against the
no_sync step timed next to it, which drifting machine load affects less than the difference
of the two medians (also in the JSON).

A step's time is the slowest rank's (each step starts at a barrier); the table gives the
median over the timed steps after the warm-ups, and the overhead t(N) / t(1) - 1 against
both world-size-1 runs. `--json OUT` writes the raw numbers (every rank's step times).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                 "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def inner(args: argparse.Namespace) -> None:
    """Runs in every rank (or alone, for the plain run); rank 0 prints one JSON line."""
    import torch
    import torch.distributed as dist

    from liss import config
    from liss.data import synthetic
    from liss.data.batch import Batch, DomainBatch
    from liss.distributed import init_distributed, shutdown
    from liss.train.trainer import Trainer

    torch.set_num_threads(1)
    env = init_distributed(args.device)
    world = env.world_size
    with tempfile.TemporaryDirectory() as tmp:
        if env.is_main:
            synthetic.generate(Path(tmp) / "d", n_train=4, n_test=1, size=32, seed=0)
        root = env.broadcast_object(str(Path(tmp) / "d"))
        cfg = config.load(None, [
            f"data.root={root}", f"data.load_size={args.size}", f"data.crop_size={args.size}",
            f"data.batch_size={args.batch * world}", f"model.ngf={args.ngf}",
            f"model.ndf={args.ngf}", f"train.precision={args.precision}", "tracking.uri=none",
            f"run.dir={tmp}", "data.backend=torch", f"train.device={args.device}"])
        env.barrier()
        trainer = Trainer(cfg, env)
        env.barrier()  # rank 0's data folder goes with its temporary directory
    sides = list(trainer.sides.values())
    wrapped = [side.ddp for side in sides if side.ddp is not None]
    cuda = env.device.type == "cuda"
    g = torch.Generator().manual_seed(env.rank)

    def domain() -> DomainBatch:
        return DomainBatch(torch.rand(args.batch, 3, args.size, args.size, generator=g) * 2 - 1,
                           torch.rand(args.batch, 1, args.size, args.size, generator=g),
                           torch.arange(args.batch), torch.arange(args.batch))

    batch = Batch(domain(), domain()).to(env.device, trainer.channels_last)

    def step(sync: bool) -> float:
        env.barrier()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            if not sync:
                for ddp in wrapped:
                    stack.enter_context(ddp.no_sync())
            trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    # under DDP, steps with and without the all-reduce alternate (ABBA: neither kind always first)
    modes = [True, False] if wrapped else [True]
    for _ in range(args.warmup):
        for sync in modes:
            step(sync)
    times: dict[bool, list[float]] = {sync: [] for sync in modes}
    for i in range(args.steps):
        for sync in modes if i % 2 == 0 else modes[::-1]:
            times[sync].append(step(sync))
    mine = {"sync": times[True], "no_sync": times.get(False)}
    ranks = env.gather_object(mine)  # every rank's times, on rank 0
    if env.is_main:
        def slowest(key: str) -> list[float] | None:
            if ranks[0][key] is None:
                return None
            return [max(r[key][i] for r in ranks) for i in range(args.steps)]

        sync_t, nosync_t = slowest("sync"), slowest("no_sync")
        out = {"world": world,
               "process_group": dist.get_backend() if dist.is_initialized() else None,
               "ddp_sides": [s.name for s in sides if s.ddp is not None],
               "device": str(env.device), "threads": torch.get_num_threads(),
               "step_s": statistics.median(sync_t), "step_times": sync_t,
               "per_rank": ranks}
        if nosync_t is not None:
            out["no_sync_s"] = statistics.median(nosync_t)
            out["no_sync_times"] = nosync_t
            # each sync step against the no_sync step beside it: robust to drift in load
            out["exposed_s"] = statistics.median(
                a - b for a, b in zip(sync_t, nosync_t, strict=True))
            out["exposed_of_medians_s"] = out["step_s"] - out["no_sync_s"]
        print(json.dumps(out))
    shutdown()


def child(n: int | None, args: argparse.Namespace) -> dict:
    """One run: n=None without a process group, else torchrun with n processes."""
    own = [f"--{k}={getattr(args, k)}" for k in
           ("size", "batch", "ngf", "precision", "device", "steps", "warmup")]
    script = [str(Path(__file__).resolve()), "--inner", *own]
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    if n is None:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={n}", *script]
    label = "world size 1, no process group" if n is None else f"torchrun, world size {n}"
    print(f"{label} ...", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except BaseException:  # a timeout or an interrupt: no rank outlives this script
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode:
        sys.exit(f"{label} failed:\n{err[-3000:]}")
    for line in err.splitlines():  # DDP's and torch's warnings, if any
        if "warn" in line.lower():
            print(f"  [{label}] {line.strip()}", file=sys.stderr)
    result = json.loads(out.strip().splitlines()[-1])
    result["run"] = "plain" if n is None else "ddp"
    return result


def table(results: list[dict], nproc: int) -> str:
    plain, one, many = results
    rows = ["| run | world size | process group | s/step | vs plain (world size 1) "
            "| vs DDP, world size 1 | no_sync s/step | exposed communication s/step "
            "| exposed share |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in (("plain", plain), ("torchrun + DDP", one), ("torchrun + DDP", many)):
        vs_plain = "–" if r is plain else f"{r['step_s'] / plain['step_s'] - 1:+.1%}"
        vs_one = "–" if r is not many else f"{r['step_s'] / one['step_s'] - 1:+.1%}"
        if "no_sync_s" in r:
            extra = (f"{r['no_sync_s']:.4f} | {r['exposed_s']:.4f} "
                     f"| {r['exposed_s'] / r['step_s']:.1%}")
        else:
            extra = "– | – | –"
        rows.append(f"| {name} | {r['world']} | {r['process_group'] or 'none'} "
                    f"| {r['step_s']:.4f} | {vs_plain} | {vs_one} | {extra} |")
    rows.append(f"\noverhead of world size {nproc} (same per-rank batch): "
                f"{many['step_s'] / plain['step_s'] - 1:+.1%} vs plain world size 1, "
                f"{many['step_s'] / one['step_s'] - 1:+.1%} vs DDP at world size 1; "
                f"exposed communication {many['exposed_s']:.4f} s/step "
                f"({many['exposed_s'] / many['step_s']:.1%} of the step; difference of the "
                f"medians {many['exposed_of_medians_s']:.4f} s)")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=2, help="per rank")
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per child")
    p.add_argument("--json", type=Path)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        inner(args)
        return
    if args.nproc < 2:
        p.error("--nproc must be at least 2 (world size 1 is always measured)")
    results = [child(None, args), child(1, args), child(args.nproc, args)]
    print(table(results, args.nproc))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items()
                                                  if k not in ("inner", "json")},
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
