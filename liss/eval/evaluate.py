"""`liss eval`: a checkpoint's translation quality and task metrics on a dataset split.

* paired truth (`paired.py`): L1, PSNR, SSIM and L1 on changed pixels per direction, and
  where the truth has object masks background L1/PSNR, object L1 and the phase-blind
  texture score, each with the identity baseline (the untranslated input against the truth);
* with `--fid`: FID and KID per direction by torch-fidelity, translations of every full
  split image of one domain, saved as 8-bit PNGs, against the real split images of the other
  (Inception weights supplied by the user);
* the auxiliary tasks (rotation and jigsaw accuracy, depth L1, gray loss, plus cycle and
  identity L1) on the split for both domains, computed exactly as validation computes them.

Directions are named by config domain like the trainer's `test/A2B_*`: A2B is G_A, which
translates the dataset's A folders unless the model was trained with `data.direction=BtoA`.
Everything is deterministic: centre crops at the trained size (FID/KID: full images), fixed
jigsaw puzzles.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from liss.config import Config
from liss.data.augment import Preprocess
from liss.data.images import BadImageError
from liss.data.layout import DOMAINS, Split, depth_path, load_splits
from liss.eval import fid as fid_lib
from liss.eval.generators import DIRECTIONS, LoadError, Translator, config_of, read_state
from liss.eval.paired import paired_metrics
from liss.model import LissModel, other
from liss.paired_names import METRICS, well_posed
from liss.taskspec import TASKS, needs_depth

AUX_ROWS = (*((s.val_metric, s.label) for s in TASKS), ("cycle_l1", "cycle L1"),
            ("idt_l1", "identity L1"), ("distill_l1", "distillation L1"))


# ---------------------------------------------------------------------- the model


def build_model(state: dict[str, Any], cfg: Config, device: torch.device) -> LissModel:
    """A LissModel holding every network of `state` (generators may lack task heads)."""
    model = LissModel(cfg)
    models = state["models"]
    if "E_A_ref" in models:
        model.build_reference_slots()
    for name, net in model.networks().items():
        if name in models:
            missing, unexpected = net.load_state_dict(models[name], strict=False)
            if unexpected or any(not k.startswith("heads.") for k in missing):
                raise LoadError(f"{name} does not fit its config (missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]})")
    return model.to(device).eval()


def _aux_blockers(state: dict[str, Any], cfg: Config, split: Split) -> list[str]:
    """Why the task metrics cannot be computed (empty when they can)."""
    tasks = cfg.tasks.auxiliary_tasks
    why = []
    for name in ("G_A", "G_B"):
        heads = {k.split(".")[1] for k in state["models"].get(name, {}) if k.startswith("heads.")}
        if name not in state["models"]:
            why.append(f"{name} is not in the file")
        elif not set(tasks) <= heads:
            why.append(f"{name} has no task heads (a translation-only export)")
    if not all(split[d] for d in DOMAINS):
        why.append("a domain has no images in this split")
    if needs_depth(tasks):
        lacking = [f for d in DOMAINS for f in split[d] if not depth_path(f).is_file()]
        if lacking:
            why.append(f"depth maps are missing (e.g. {depth_path(lacking[0])})")
    return why


def task_metrics(model: LissModel, cfg: Config, splits: dict[str, Split], split: str,
                 device: torch.device) -> dict[str, float]:
    """`{split}/<A|B>/<task>_acc|loss`, cycle and identity L1: validation's own numbers."""
    from liss.data.pipeline import InputPipeline
    from liss.distributed import DistEnv
    from liss.eval.validation import run_validation
    from liss.precision import Precision

    data = InputPipeline(cfg, splits, "torch", rank=0, world_size=1,
                         with_depth=needs_depth(cfg.tasks.auxiliary_tasks), pin_memory=False)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    metrics = run_validation(model, data, env, Precision("fp32", device), channels_last=False,
                             split=split)
    return {f"{split}/{k.removeprefix('val/')}": v for k, v in metrics.items()}


# ---------------------------------------------------------------------- FID / KID


def dataset_direction(d: str, cfg: Config) -> str:
    """The dataset direction config domain `d`'s generator translates (AtoB or BtoA)."""
    trained = cfg.data.direction
    return trained if d == "A" else next(x for x in DIRECTIONS if x != trained)


def translate_to_pngs(model: LissModel, cfg: Config, d: str, files: list[Path], out: Path,
                      batch_size: int, device: torch.device) -> list[Path]:
    """G_d of every file at its full size, written to `out` as 8-bit PNGs (`liss translate
    --png`: same padding and tiling); the PNGs in torch-fidelity's reading order."""
    from liss.eval.translate import Options, translate_files

    direction = dataset_direction(d, cfg)
    translator = Translator("checkpoint", 0, {direction: model.G[d]})
    result = translate_files(translator, files, out, Options(directions=(direction,),
                                                             batch_size=batch_size, png=True),
                             device)
    if result.failed:
        path, reason = result.failed[0]
        raise BadImageError(path, reason)
    return fid_lib.protocol_order(o[direction] for o in result.outputs.values())


@torch.no_grad()
def fid_metrics(model: LissModel, cfg: Config, files: dict[str, list[Path]],
                extractor: fid_lib.Extractor, *, split: str, batch_size: int,
                device: torch.device, out: Path,
                domains: Iterable[str] = DOMAINS) -> dict[str, float]:
    """`{split}/{A2B,B2A}_{fid,kid,kid_std}` by the community protocol: G_d of every full d
    image saved as an 8-bit PNG under `out/{A2B,B2A}`, against the real files of the other
    domain, both read as torch-fidelity reads image folders, for d in `domains`."""
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    for d in domains:
        o = other(d)
        if len(files[d]) < 2 or len(files[o]) < 2:
            continue
        fakes = translate_to_pngs(model, cfg, d, files[d], out / f"{d}2{o}", batch_size,
                                  device)
        real = fid_lib.protocol_order(files[o])
        scores = fid_lib.scores(
            fid_lib.features(extractor, fid_lib.file_batches(fakes, batch_size), device),
            fid_lib.features(extractor, fid_lib.file_batches(real, batch_size), device))
        metrics.update({f"{split}/{d}2{o}_{k}": v for k, v in scores.items()})
    model.train(was_training)
    return metrics


# ---------------------------------------------------------------------- the report


def evaluate(path: Path, root: Path, *, split: str = "test", fid: bool = False,
             inception_weights: str | None = None, fid_dir: Path | None = None,
             batch_size: int = 8, device: torch.device | None = None,
             extractor: fid_lib.Extractor | None = None) -> dict[str, Any]:
    """Every number of `liss eval`, with the checkpoint and config they came from.

    `fid_dir` keeps the translations FID/KID are computed from (else a temporary folder);
    `extractor` replaces the Inception network (tests use small stand-ins).
    """
    device = device or torch.device("cpu")
    if not root.is_dir():
        raise LoadError(f"{root}: dataset folder not found")
    if fid and extractor is None:  # before any slow work: a missing file fails at once
        extractor = fid_lib.load_inception(fid_lib.resolve_weights(inception_weights), device)
    state = read_state(path)
    cfg = config_of(state, path)
    cfg.data.root = str(root)
    model = build_model(state, cfg, device)
    splits = load_splits(root, direction=cfg.data.direction, val_fraction=cfg.data.val_fraction,
                         max_dataset_size=cfg.data.max_dataset_size)
    files = {d: splits[split][d] for d in DOMAINS}
    if not any(files.values()):
        raise LoadError(f"{root}: no {split} images (looked in {root / (split + 'A')} and "
                        f"{root / (split + 'B')})")
    translated = {d: files[d] for d in DOMAINS if f"G_{d}" in state["models"]}
    carved = split == "val" and not (root / "valA").is_dir()
    notes: list[str] = []
    d = cfg.data
    try:
        metrics = paired_metrics(model, root, translated, prep=Preprocess.of(d),
                                 split=split, direction=d.direction,
                                 batch_size=batch_size, device=device,
                                 truth_split="train" if carved else None)
        if not metrics:
            notes.append(f"no paired truth under {root / 'gt'} for these images")
        if fid:
            with tempfile.TemporaryDirectory(prefix="liss-fid-") as tmp:
                scored = fid_metrics(model, cfg, files, extractor, split=split,
                                     batch_size=batch_size, device=device,
                                     out=fid_dir or Path(tmp), domains=translated)
            if len(scored) < 3 * len(translated):
                notes.append("FID/KID need at least 2 images in each domain: not all reported")
            metrics |= scored
        blockers = _aux_blockers(state, cfg, splits[split])
        notes += [f"task metrics not computed: {why}" for why in blockers]
        if not blockers:
            metrics |= task_metrics(model, cfg, splits, split, device)
            if "gray" in cfg.tasks.auxiliary_tasks and "D_A_gray" not in state["models"]:
                notes.append("gray loss needs the gray discriminators (a full-state "
                             "checkpoint): not reported")
                metrics = {k: v for k, v in metrics.items() if not k.endswith("gray_loss")}
    except BadImageError as e:
        raise LoadError(str(e)) from None
    return {"checkpoint": str(path.resolve()), "kind": state["kind"], "step": int(state["step"]),
            "data": str(root.resolve()), "split": split,
            "images": {dom: len(f) for dom, f in files.items()},
            "metrics": dict(sorted(metrics.items())), "notes": notes,
            "fid_dir": str(fid_dir.resolve()) if fid and fid_dir else None,
            "config": state["config"]}


METRIC_LABELS = {"l1": "L1", "psnr": "PSNR (dB)", "ssim": "SSIM", "changed_l1": "L1 changed px",
                 "bg_l1": "L1 background", "bg_psnr": "PSNR bg (dB)", "object_l1": "L1 objects",
                 "texture": "texture (MMD2)"}


def _cell(metrics: dict[str, float], key: str, digits: int = 4) -> str:
    return f"{metrics[key]:.{digits}f}" if key in metrics else "-"


def format_report(report: dict[str, Any]) -> str:
    """The terminal table."""
    m, split = report["metrics"], report["split"]
    images = ", ".join(f"{n} {d}" for d, n in report["images"].items())
    lines = [f"{report['checkpoint']} (step {report['step']}) on {report['data']} {split}: "
             f"{images} images", ""]
    if any(k.endswith("_identity_l1") for k in m):
        lines.append(f"{'vs paired truth':<18}{'A2B':>10}{'identity':>10}{'B2A':>10}"
                     f"{'identity':>10}")
        for key in METRICS:
            keys = [f"{split}/{n}_{p}{key}" for n in ("A2B", "B2A") for p in ("", "identity_")]
            if any(k in m for k in keys):
                lines.append(f"  {METRIC_LABELS[key]:<16}"
                             + "".join(f"{_cell(m, k):>10}" for k in keys))
        if any(k.endswith("_texture") for k in m):
            direction = report["config"].get("data", {}).get("direction", "AtoB")
            posed = ", ".join(f"{well_posed(n, direction)[1]} {n}" for n in ("A2B", "B2A"))
            lines.append(f"  well-posed on the synthetic data: background both ways, {posed} "
                         "(docs/evaluation.md)")
    if any(k.endswith("_fid") for k in m):
        lines.append(f"{'realism':<18}{'A2B':>10}{'B2A':>10}")
        for key, label in (("fid", "FID"), ("kid", "KID x 1000")):
            scale = 1000 if key == "kid" else 1
            row = "".join(f"{m[f'{split}/{n}_{key}'] * scale:>10.3f}"
                          if f"{split}/{n}_{key}" in m else f"{'-':>10}" for n in ("A2B", "B2A"))
            lines.append(f"  {label:<16}{row}")
    if any(k.startswith(f"{split}/A/") for k in m):
        lines.append(f"{'tasks':<18}{'A':>10}{'B':>10}")
        for suffix, label in AUX_ROWS:
            if f"{split}/A/{suffix}" in m:
                row = "".join(f"{_cell(m, f'{split}/{d}/{suffix}'):>10}" for d in DOMAINS)
                lines.append(f"  {label:<16}{row}")
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)
