"""Every GPU number the project promises, measured in one run of under 8 minutes on one GPU.

    PYTHONPATH=. python bench/gpu_suite.py --out $OUT            # on the lent GPU machine
    PYTHONPATH=. python bench/gpu_suite.py --smoke --out /tmp/s  # every part, tiny, on a CPU

Parts: (a) the LiSS and CycleGAN training step at 256 px (bf16/fp16, contiguous/channels_last,
compiled or not), as a share of a measured bf16 matmul, with peak memory per image; (b) DALI
mixed-decode throughput and the data-wait share of a real 200-step training; (c) the step at
world size 1 with the torchrun environment (a NCCL process group) vs without; (d) `liss
translate` throughput at 256 and 1024 px. Every point runs in its own process, reusing the
`--one` children of bench/train_step.py and bench/translate.py and the loaders of
bench/data_pipeline.py, in priority order within a time budget: a point that does not fit,
or whose optional package (DALI) is missing, is reported as skipped, and one that fails as
failed with its error's tail; the suite always goes on. It needs only torch, torchvision,
numpy, pillow and pyyaml (no MLflow: tracking is off; no torch_optimizer: `optim.name=radam`).

Writes DIR/gpu_suite.json (raw, rewritten after every point) and DIR/gpu_suite.md (the
tables, also printed on stdout).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import data_pipeline
from isolated import ChildError, ChildTimeoutError, run_json

BENCH = Path(__file__).resolve().parent
TORCHRUN_VARS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                 "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")
MIN_START_S = 15  # a point is not started with less of the budget left
CONFIGS = ("cyclegan", "liss")
FORMATS = ("contiguous", "channels_last")


class Step(NamedTuple):
    config: str
    batch: int
    precision: str
    format: str


@dataclass(frozen=True)
class Plan:
    """What one run measures: the lent GPU's set, or `--smoke`'s tiny CPU one."""

    device: str
    px: int
    ngf: int
    steps: int
    warmup: int
    first: tuple[Step, ...]  # the promise's rows: run before every other part
    later: tuple[tuple[Step, bool], ...]  # (step, compiled), once the other parts have run
    ddp: Step
    translate_px: tuple[int, ...]
    translate_batch: int
    translate_repeat: int
    loader: dict  # DALI vs torch loader throughput: batch, workers, seconds, rounds, images
    wait: dict  # the data-wait training: steps, log_every, batch, workers, load, crop, images,
    #             extra overrides
    budget_s: float
    note: str
    compile_skip: str | None = None  # why compiled rows do not run in this plan
    threads: int | None = None  # OMP_NUM_THREADS of every child (None: torch's default)


def fp16(batch: int) -> tuple[tuple[Step, bool], ...]:
    """The uncompiled fp16 rows at `batch`: the same speed as bf16's on recent GPUs, so they
    come after the bf16 ones."""
    return tuple((Step(c, batch, "fp16", f), False) for c, f in itertools.product(CONFIGS, FORMATS))


GPU = Plan(
    device="cuda", px=256, ngf=64, steps=6, warmup=2,
    first=tuple(Step(c, b, "bf16", f) for c, b, f in itertools.product(CONFIGS, (8, 16), FORMATS)),
    later=(*fp16(16), *((Step(c, 16, "bf16", "channels_last"), True) for c in CONFIGS),
           *fp16(8)),
    ddp=Step("liss", 8, "bf16", "channels_last"),
    translate_px=(256, 1024), translate_batch=4, translate_repeat=5,
    loader={"batch": 8, "workers": 6, "seconds": 2.0, "rounds": 2, "images": 64},
    wait={"steps": 200, "log_every": 50, "batch": 8, "workers": 6, "load": 286, "crop": 256,
          "images": 64, "extra": []},
    budget_s=450,
    note="Subset of the full product: every uncompiled point (2 configs × batch 8, 16 × "
         "bf16, fp16 × contiguous, channels_last) but `train.compile=true` only for bf16 × "
         "channels_last × batch 16, both configs: compiling takes minutes per point, so the "
         "full product (32 points) does not fit 8 minutes. Points run in priority order "
         "(bf16 rows, the other parts, fp16 at batch 16, compiled, fp16 at batch 8) within "
         "the time budget; a point that does not fit is listed as skipped.")

SMOKE = Plan(
    device="cpu", px=32, ngf=4, steps=2, warmup=1,
    first=(Step("cyclegan", 2, "fp32", "contiguous"), Step("liss", 1, "bf16", "channels_last")),
    later=((Step("liss", 1, "fp16", "contiguous"), False),
           (Step("cyclegan", 1, "fp32", "contiguous"), True)),
    ddp=Step("liss", 1, "fp32", "contiguous"),
    translate_px=(32, 64), translate_batch=1, translate_repeat=1,
    loader={"batch": 2, "workers": 1, "seconds": 0.5, "rounds": 1, "images": 8},
    wait={"steps": 6, "log_every": 2, "batch": 2, "workers": 1, "load": 36, "crop": 32,
          "images": 8, "extra": ["model.ngf=4", "model.ndf=4", "train.precision=fp32"]},
    budget_s=300,
    note="Smoke run: every part at toy sizes on the CPU, one thread per process, to show "
         "that each runs; the numbers mean nothing.",
    compile_skip="GPU runs only (inductor's CPU compile of even ngf 4 nets takes 1-2 "
                 "minutes on 2 cores)",
    threads=1)  # toy ops in 2 threads on a shared CPU wait for each other: ~10x slower


@dataclass
class Point:
    """One child process: `script --one *args` in `env`; its row's identifying fields in
    `key`, and at most `cap_s` seconds."""

    part: str
    key: dict
    script: Path
    args: list[str]
    env: dict[str, str]
    cap_s: float
    skip: str | None = None  # known before running: the reason it cannot run here


def free_port() -> int:
    """A TCP port free now, for the world-size-1 child's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plain_env(plan: Plan) -> dict[str, str]:
    """This environment without torchrun's variables (a child runs without a process group),
    with the plan's thread count."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    return {**env, "OMP_NUM_THREADS": str(plan.threads)} if plan.threads else env


def train_point(plan: Plan, step: Step, *, compiled: bool = False, part: str = "train_step",
                env: dict[str, str] | None = None, key: dict | None = None,
                no_bf16: str | None = None) -> Point:
    """A `bench/train_step.py` child: one configuration of the step."""
    warmup = plan.warmup + 2 if compiled else plan.warmup  # compiling runs in the first steps
    skip = no_bf16 if step.precision == "bf16" else None
    if compiled and plan.compile_skip:
        skip = plan.compile_skip
    return Point(part, key or {**step._asdict(), "px": plan.px, "compiled": compiled},
                 BENCH / "train_step.py",
                 [f"--config={step.config}", f"--size={plan.px}", f"--batch={step.batch}",
                  f"--precision={step.precision}", f"--format={step.format}",
                  f"--ngf={plan.ngf}", f"--steps={plan.steps}", f"--warmup={warmup}",
                  f"--device={plan.device}", *(["--compile"] if compiled else [])],
                 env or plain_env(plan), cap_s=240 if compiled else 90, skip=skip)


def job_point(plan: Plan, part: str, key: dict, job: dict, cap_s: float,
              skip: str | None) -> Point:
    """A point measured by this script's own `--one` child (the loader parts)."""
    return Point(part, key, Path(__file__).resolve(), ["--job", json.dumps(job)],
                 plain_env(plan), cap_s, skip=skip)


def points(plan: Plan, no_bf16: str | None, no_dali: str | None) -> list[Point]:
    """Every point of `plan`, in the order they run (priority)."""
    out = [Point("matmul", {"precision": "bf16"}, BENCH / "train_step.py",
                 ["--config=matmul", "--precision=bf16", f"--device={plan.device}"],
                 plain_env(plan), 60, skip=no_bf16)]
    out += [train_point(plan, s, no_bf16=no_bf16) for s in plan.first]
    torchrun = {**plain_env(plan), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
                "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0",
                "TORCHELASTIC_RUN_ID": "gpu-suite"}  # what makes it torchrun's world of one
    for name, env in (("no WORLD_SIZE", None), ("WORLD_SIZE=1, RANK=0 (torchrun's)", torchrun)):
        out.append(train_point(plan, plan.ddp, part="ddp", env=env, no_bf16=no_bf16,
                               key={"environment": name, **plan.ddp._asdict(), "px": plan.px}))
    out += [Point("translate", {"px": px, "batch": plan.translate_batch},
                  BENCH / "translate.py",
                  [f"--size={px}", "--tile-px=0", f"--batch={plan.translate_batch}",
                   f"--repeat={plan.translate_repeat}", f"--ngf={plan.ngf}",
                   f"--device={plan.device}"], plain_env(plan), 60)
            for px in plan.translate_px]
    loader = {"kind": "loader", "device": plan.device, **plan.loader}
    out.append(job_point(plan, "dali", {"batch": plan.loader["batch"],
                                        "threads/workers": plan.loader["workers"]}, loader, 90,
                         no_dali))
    for backend in ("torch", "dali"):
        wait = {"kind": "wait", "device": plan.device, "backend": backend, **plan.wait}
        key = {"backend": backend, "crop": plan.wait["crop"], "batch": plan.wait["batch"]}
        out.append(job_point(plan, "data_wait", key, wait, 180,
                             no_dali if backend == "dali" else None))
    out += [train_point(plan, s, compiled=c, no_bf16=no_bf16) for s, c in plan.later]
    return out


# ------------------------------------------------------------------ children of this script

def loader_job(job: dict) -> dict:
    """DALI (mixed nvJPEG decode on CUDA) vs the torch loader, images/s, medians of rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        root = data_pipeline.make_dataset(Path(tmp) / "jpegs", job["images"])
        runs: dict[str, list[float]] = {"dali": [], "torch": []}
        for _ in range(job["rounds"]):
            for backend, found in runs.items():
                found.append(data_pipeline.throughput(root, backend, job["batch"],
                                                      job["workers"], job["seconds"],
                                                      job["device"]))
    dali, torch_ = (statistics.median(runs[b]) for b in ("dali", "torch"))
    return {"dali_img_per_s": dali, "torch_img_per_s": torch_, "ratio": dali / torch_}


def wait_job(job: dict) -> dict:
    """A real training of `steps` steps; its data-wait share, as the trainer measures it."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = data_pipeline.make_dataset(Path(tmp) / "jpegs", job["images"])
        out = data_pipeline.wait_run(root, Path(tmp) / "runs", job["backend"], job["steps"],
                                     job["log_every"], job["batch"], job["workers"],
                                     job["load"], job["crop"], job["device"], job["extra"])
    return {**out, "wall_s": time.perf_counter() - start}


# ------------------------------------------------------------------ the tables

PARTS = {
    "matmul": "bf16 matmul: the ceiling of (a)",
    "train_step": "(a) Training step",
    "dali": "(b) DALI mixed-decode throughput (vs the torch loader)",
    "data_wait": "(b) Data wait in a real training (`perf/data_wait_frac`)",
    "ddp": "(c) World size 1: torchrun's environment (process group, DDP) vs none",
    "translate": "(d) `liss translate` throughput",
}
Column = tuple[str, Callable[[dict, dict], str]]  # header, (row, all results) -> cell


def _key(name: str) -> Column:
    return name, lambda r, _: str(r[name])


def _num(header: str, name: str, fmt: str) -> Column:
    return header, lambda r, _: format(r[name], fmt)


def _bf16_share(r: dict, results: dict) -> str:
    (mm,) = results["matmul"]
    return f"{r['tflops'] / mm['tflops']:.1%}" if mm["status"] == "ok" else "–"


def _vs_none(r: dict, results: dict) -> str:
    """The step's time against the first row's (no WORLD_SIZE)."""
    base = results["ddp"][0]
    return f"{r['step_s'] / base['step_s'] - 1:+.1%}" if base["status"] == "ok" else "–"


COLUMNS: dict[str, tuple[list[Column], list[Column]]] = {  # part -> key columns, numbers
    "matmul": ([_key("precision")], [_num("n", "n", "d"), _num("TFLOP/s", "tflops", ".3g")]),
    "train_step": (
        [_key("config"), _key("px"), _key("batch"), _key("precision"), _key("format"),
         ("compiled", lambda r, _: "yes" if r["compiled"] else "no")],
        [_num("s/step", "step_s", ".4f"), _num("img/s", "img_per_s", ".1f"),
         ("peak GB/img", lambda r, _: f"{r['peak_gb'] / r['batch']:.2f}"),
         _num("TFLOP/s", "tflops", ".3g"), ("of bf16 matmul", _bf16_share)]),
    "dali": ([_key("batch"), _key("threads/workers")],
             [_num("DALI img/s", "dali_img_per_s", ".0f"),
              _num("torch img/s", "torch_img_per_s", ".0f"), _num("DALI / torch", "ratio", ".2f")]),
    "data_wait": (
        [_key("backend"), _key("crop"), _key("batch")],
        [_num("steps", "steps", "d"), _num("data wait", "wait_frac", ".2%"),
         _num("first interval", "wait_frac_first", ".2%"), _num("train img/s", "img_per_s", ".1f"),
         _num("wall s", "wall_s", ".0f")]),
    "ddp": ([_key("environment"), _key("config"), _key("batch"), _key("precision"),
             _key("format")],
            [("process group", lambda r, _: r["process_group"] or "none"),
             _num("s/step", "step_s", ".4f"), _num("img/s", "img_per_s", ".1f"),
             ("vs none", _vs_none)]),
    "translate": ([_key("px"), _key("batch")],
                  [_num("s/batch", "s_per_batch", ".4f"), _num("img/s", "img_per_s", ".1f"),
                   _num("peak GB", "peak_gb", ".2f")]),
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def status_text(r: dict) -> str:
    if r["status"] == "skipped":
        return f"skipped: {r['reason']}"
    if r["status"] == "failed":
        return "failed (error below)"
    return "ok"


def part_status(rows: list[dict]) -> str:
    """failed if a point failed; skipped if every point was; else ok."""
    statuses = {r["status"] for r in rows}
    return "failed" if "failed" in statuses else "skipped" if statuses == {"skipped"} else "ok"


def render(results: dict[str, list[dict]], head: list[str]) -> str:
    """The markdown: `head`, then one table per part that has rows, then the errors."""
    lines = [*head]
    for part, title in PARTS.items():
        if part not in results:
            continue
        keys, numbers = COLUMNS[part]
        cols = [*keys, *numbers]
        lines += ["", f"### {title}: {part_status(results[part])}", "",
                  "| " + " | ".join(h for h, _ in cols) + " | status |",
                  "|" + "---|" * (len(cols) + 1)]
        for r in results[part]:
            cells = [f(r, results) for _, f in keys]
            cells += [f(r, results) if r["status"] == "ok" else "–" for _, f in numbers]
            lines.append("| " + " | ".join(map(_cell, [*cells, status_text(r)])) + " |")
    errors = [r for rows in results.values() for r in rows if r["status"] == "failed"]
    if errors:
        lines += ["", "### Errors", ""]
        for r in errors:
            lines += [f"{r['label']}:", "", "```", r["error"].strip(), "```", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ running

def label(p: Point) -> str:
    """The point in words, for progress lines and errors."""
    words = [("compiled" if v else "eager") if isinstance(v, bool) else str(v)
             for v in p.key.values()]
    return f"{p.part}: {' '.join(words)}"


def run_point(p: Point, deadline: float) -> dict:
    row = {**p.key, "label": label(p)}
    left = deadline - time.monotonic()
    if p.skip:
        return {**row, "status": "skipped", "reason": p.skip}
    if left < MIN_START_S:
        return {**row, "status": "skipped", "reason": "time budget spent"}
    try:
        result = run_json(p.script, p.args, p.env, timeout=min(p.cap_s, left))
    except ChildError as e:
        if isinstance(e, ChildTimeoutError) and left < p.cap_s:  # the budget's limit, not its own
            return {**row, "status": "skipped",
                    "reason": f"time budget spent (stopped after {left:.0f} s)"}
        return {**row, "status": "failed", "error": str(e)}
    return {**row, "status": "ok", **result}


def machine(device: str) -> str:
    import torch

    name = torch.cuda.get_device_name() if device == "cuda" else data_pipeline.cpu_name()
    return (f"{time.strftime('%Y-%m-%d %H:%M')}; {name}, {os.cpu_count()} CPU cores; Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def unavailable(plan: Plan) -> tuple[str | None, str | None]:
    """Why bf16 rows, and why DALI, cannot run on this machine (None: they can)."""
    import torch

    from liss.data import dali_backend
    from liss.precision import bf16_supported

    no_bf16 = None if bf16_supported(torch.device(plan.device)) else (
        f"no bf16 units on this {plan.device} (emulated bf16 is many times slower than fp32)")
    return no_bf16, dali_backend.unavailable_reason(dali_backend.device_id(plan.device))


def run_suite(plan: Plan, budget: float, out: Path, title: str) -> str:
    """Every point of `plan` within `budget` seconds; the JSON and markdown in `out` are
    rewritten after each point, so a run stopped from outside still leaves its results."""
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    summary = {"smoke": plan is SMOKE, "budget_s": budget, "machine": machine(plan.device),
               "note": plan.note, "wall_s": 0.0, "finished": False}
    results: dict[str, list[dict]] = {}
    todo = points(plan, *unavailable(plan))
    for n, point in enumerate(todo, 1):
        row = run_point(point, start + budget)
        results.setdefault(point.part, []).append(row)
        summary["wall_s"] = time.monotonic() - start
        summary["finished"] = n == len(todo)
        print(f"[{n}/{len(todo)} {summary['wall_s']:.0f} s] {row['label']}: "
              f"{status_text(row)}", file=sys.stderr, flush=True)
        parts = {part: {"status": part_status(rows), "rows": rows}
                 for part, rows in results.items()}
        (out / "gpu_suite.json").write_text(json.dumps({"suite": summary, "parts": parts},
                                                       indent=1))
        done = "" if summary["finished"] else f" Unfinished: {n} of {len(todo)} points."
        table = render(results, [title, "", summary["machine"], "", plan.note, "",
                                 f"Wall time {summary['wall_s']:.0f} s of a {budget:.0f} s "
                                 f"budget.{done}"])
        (out / "gpu_suite.md").write_text(table + "\n")
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="folder for gpu_suite.json and gpu_suite.md")
    p.add_argument("--smoke", action="store_true", help="every part at toy sizes on the CPU")
    p.add_argument("--budget", type=float, help="seconds for all points (default: the plan's)")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--job", type=json.loads, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps({"loader": loader_job, "wait": wait_job}[args.job["kind"]](args.job)))
        return
    if args.out is None:
        p.error("--out DIR is required")
    plan = SMOKE if args.smoke else GPU
    import torch

    if plan.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: the suite is for a GPU machine (--smoke runs on a CPU)")
    print(run_suite(plan, args.budget or plan.budget_s, args.out,
                    f"## GPU suite{' (smoke)' if args.smoke else ''}"))


if __name__ == "__main__":
    main()
