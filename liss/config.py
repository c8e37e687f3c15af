"""Typed configuration: dataclass tree, YAML loading, dotted overrides, validation.

Every leaf carries its help text and its allowed values in `field(metadata=...)`, so the
same declaration drives validation, error messages and `configs/default.yaml`.
Option names of the original LiSS code are kept (`lambda_CA`, `rotation_acc_threshold`, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from liss import resources
from liss.nn.sizes import STRIDE, min_discriminator_input
from liss.paired_names import METRICS as PAIRED_METRICS
from liss.taskspec import AUTO, TASK_NAMES, auto_tasks, specs_of


class ConfigError(ValueError):
    """A bad configuration value: names the key, the value given and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")


def opt(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> Any:
    """A config leaf with its one-line help and range constraints."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


SCHEDULES = (
    "parallel",
    "sequential",
    "additional",
    "liss",
    "representational",
    "representational-traduction",
)


PREPROCESS_MODES = ("resize_and_crop", "scale_width_and_crop", "crop", "none")
RESIZING_MODES = PREPROCESS_MODES[:2]  # the modes that read data.load_size


@dataclass
class RunConfig:
    name: str = opt("liss", "run name; the run folder is run.dir/run.name")
    dir: str = opt("runs", "parent folder of run folders")
    seed: int = opt(0, "global seed (per-rank seeds derive from it)", ge=0)


@dataclass
class DataConfig:
    root: str = opt("data/synth", "dataset root in CycleGAN layout (trainA, trainB, testA, testB)")
    backend: str = opt("auto", "input pipeline: auto = dali when training on CUDA and DALI "
                       "works there, else torch", choices=("auto", "torch", "dali"))
    preprocess: str = opt("resize_and_crop", "what an image becomes, as CycleGAN's "
                          "--preprocess: resized to load_size x load_size, or scaled to width "
                          "load_size, then cropped; crop: cropped only; none: the whole image, "
                          "cropped to a multiple of 4 (docs/data.md)", choices=PREPROCESS_MODES)
    load_size: int = opt(286, "resize_and_crop: images are resized to load_size x load_size; "
                         "scale_width_and_crop: to width load_size; unused by crop and none",
                         ge=8)
    crop_size: int = opt(256, "side of the square crop, random for training, centred for "
                         "validation; none: no such crop, only the least shorter side (crop "
                         "and none scale smaller images up to it)", ge=8)
    batch_size: int = opt(1, "global batch size (split evenly across ranks)", ge=1)
    num_workers: int = opt(4, "loader worker processes (threads for dali)", ge=0)
    no_flip: bool = opt(False, "disable the random horizontal flip (the original's never fired)")
    direction: str = opt("AtoB", "BtoA swaps the roles of A and B", choices=("AtoB", "BtoA"))
    max_dataset_size: int = opt(0, "keep the first N sorted images per domain (0 = all)", ge=0)
    scan_cache: str = opt("auto", "the start-up scan's per-file verdicts, kept across starts: "
                          "auto = run.dir/.scan-cache/, none, or a JSON file path")
    val_fraction: float = opt(0.1, "fraction of train carved out as validation when no valA/valB",
                              gt=0.0, le=0.5)
    on_bad_file: str = opt("error", "unreadable image: stop before training, or skip and count it",
                           choices=("error", "skip"))


@dataclass
class ModelConfig:
    ngf: int = opt(64, "generator width (first conv channels)", ge=1)
    ndf: int = opt(64, "discriminator width (first conv channels)", ge=1)
    n_layers_D: int = opt(3, "PatchGAN depth (3 = 70x70 receptive field)", ge=1)
    encoder_blocks: int = opt(3, "ResNet blocks in the shared encoder", ge=0)
    head_blocks: int = opt(3, "ResNet blocks at the start of every image head", ge=0)
    norm: str = opt("instance", "normalisation layer", choices=("instance", "batch", "none"))
    init_type: str = opt("normal", "weight init", choices=("normal", "xavier", "kaiming",
                                                           "orthogonal"))
    init_gain: float = opt(0.02, "std (normal) or gain of the weight init", gt=0.0)
    no_dropout: bool = opt(True, "no Dropout(0.5) in the ResNet blocks (LiSS default)")
    identity: str = opt("crossed", "identity loss Dec_A(E_B(B)) (crossed, the paper's) or "
                        "Dec_A(E_A(B)) (same, upstream CycleGAN)", choices=("crossed", "same"))
    D_rotation: bool = opt(False, "SSGAN rotation head on the discriminators")


@dataclass
class TasksConfig:
    auxiliary_tasks: list[str] = opt([AUTO], "self-supervised tasks (list or comma string), "
                                     "run in priority order rotation, jigsaw, depth, gray; "
                                     "auto = all but depth, plus depth when every train and "
                                     "val image has its depth map", choices=(AUTO, *TASK_NAMES))

    @property
    def is_auto(self) -> bool:
        return self.auxiliary_tasks == [AUTO]


@dataclass
class ScheduleConfig:
    task_schedule: str = opt("parallel", "continual-learning task schedule", choices=SCHEDULES)
    repr_mode: str = opt("freeze", "encoder after the representational switch",
                         choices=("freeze", "flow", "distillation"))
    encoder_merge_ratio: float = opt(1.0, "reference = a*current + (1-a)*previous (1 = snapshot)",
                                     ge=0.0, le=1.0)
    rotation_acc_threshold: float = opt(0.2, "rotation done when val accuracy > this (both "
                                        "domains); below chance (0.25) by default", ge=0.0, le=1.0)
    jigsaw_acc_threshold: float = opt(0.2, "jigsaw done when val accuracy > this", ge=0.0, le=1.0)
    depth_loss_threshold: float = opt(0.5, "depth done when val L1 < this", ge=0.0)
    gray_loss_threshold: float = opt(0.5, "gray done when val loss < this", ge=0.0)


@dataclass
class LossConfig:
    gan_mode: str = opt("lsgan", "adversarial loss", choices=("lsgan", "vanilla"))
    lambda_CA: float = opt(10.0, "cycle loss A->B->A", ge=0.0)
    lambda_CB: float = opt(10.0, "cycle loss B->A->B", ge=0.0)
    lambda_DA: float = opt(1.0, "generator adversarial term against D_A", ge=0.0)
    lambda_DB: float = opt(1.0, "generator adversarial term against D_B", ge=0.0)
    lambda_R: float = opt(1.0, "rotation task", ge=0.0)
    lambda_J: float = opt(1.0, "jigsaw task", ge=0.0)
    lambda_D: float = opt(1.0, "depth task", ge=0.0)
    lambda_G: float = opt(1.0, "gray (colorization) task", ge=0.0)
    lambda_DR: float = opt(1.0, "generator-side D rotation term (model.D_rotation)", ge=0.0)
    lambda_distillation: float = opt(5.0, "L1 distillation to the reference encoder", ge=0.0)
    lambda_I: float = opt(0.5, "identity loss, relative to the cycle weight", ge=0.0)
    pool_size: int = opt(50, "image pool of past fakes for the discriminators (0 = off)", ge=0)


@dataclass
class OptimConfig:
    name: str = opt("radam", "optimizer: radam (torch.optim, per-group lr), legacy_radam "
                    "(torch_optimizer, ignores per-group lr), or a torch.optim (not LBFGS, "
                    "SparseAdam, Muon) or torch_optimizer class name")
    lr: float = opt(2e-4, "initial learning rate", gt=0.0)
    beta1: float = opt(0.5, "first moment decay", ge=0.0, le=1.0)
    beta2: float = opt(0.999, "second moment decay", ge=0.0, le=1.0)
    weight_decay: float = opt(0.0, "weight decay", ge=0.0)
    lr_rotation: float = opt(0.0, "rotation heads' lr (0 = optim.lr)", ge=0.0)
    lr_jigsaw: float = opt(0.0, "jigsaw heads' lr (0 = optim.lr)", ge=0.0)
    lr_depth: float = opt(0.0, "depth heads' lr (0 = optim.lr)", ge=0.0)
    lr_gray: float = opt(0.0, "gray heads' lr (0 = optim.lr)", ge=0.0)
    n_epochs: int = opt(100, "epochs at the initial lr", ge=0)
    n_epochs_decay: int = opt(100, "epochs of linear decay, counted while translation is active; "
                              "training stops after them", ge=0)


@dataclass
class TrainConfig:
    max_steps: int = opt(0, "hard cap on optimisation steps (0 = the epoch rule alone)", ge=0)
    precision: str = opt("auto", "autocast dtype (auto = bf16 where supported)",
                         choices=("fp32", "bf16", "fp16", "auto"))
    channels_last: str = opt("auto", "NHWC memory format (auto = on for CUDA)",
                             choices=("true", "false", "auto"))
    compile: bool = opt(False, "torch.compile the whole G step and the whole D step")
    device: str = opt("auto", "training device (auto = cuda if available)",
                      choices=("auto", "cpu", "cuda"))
    val_every: int = opt(400, "validate (and update the schedule) every N steps", ge=1)
    log_every: int = opt(100, "log training losses every N steps", ge=1)
    grid_every: int = opt(0, "save an image grid every N steps (0 = at validation)", ge=0)
    ckpt_every: int = opt(5000, "checkpoint every N steps (and at the end)", ge=1)
    keep_checkpoints: int = opt(3, "keep the newest N step checkpoints", ge=1)
    resume: str = opt("auto", "auto: continue from the newest valid checkpoint of the run "
                      "folder (refused when it has checkpoints but none loads); never: "
                      "refuse a folder that has one; or a checkpoint path")
    eval_every: int = opt(0, "translation vs paired truth (and FID/KID with train.eval_fid) on "
                          "the validation split every N steps and at the end (0 = off)", ge=0)
    eval_fid: bool = opt(False, "also FID/KID at train.eval_every (torch-fidelity on uint8 "
                         "validation crops: for progress, not `liss eval --fid`'s protocol; "
                         "needs the Inception weights)")
    inception_weights: str = opt("", "pt_inception-2015-12-05-6726825d.pth (empty: "
                                 "$LISS_INCEPTION_WEIGHTS, then ~/.cache/liss/)")
    best_metric: str = opt("", "keep checkpoints/best.pt for the best value of this metric, "
                           "e.g. val/A2B_changed_l1 (empty = off)")
    best_mode: str = opt("auto", "auto: acc/psnr/ssim up, everything else down",
                         choices=("auto", "min", "max"))
    progress: bool = opt(True, "redraw a progress line on a terminal (else: a log line per "
                         "train.log_every steps)")


@dataclass
class TrackingConfig:
    uri: str = opt("", "MLflow tracking URI: empty = $MLFLOW_TRACKING_URI, else one SQLite "
                   "store for every run under run.dir (<run.dir>/mlflow.db; a run folder "
                   "of an earlier version keeps its own mlflow.db); http(s)://..., "
                   "sqlite:///..., or none")
    experiment: str = opt("liss", "MLflow experiment name")
    parent_run_id: str = opt("", "MLflow run to nest this run under (sweeps; or "
                             "$LISS_PARENT_RUN_ID)")
    sweep_id: str = opt("", "sweep this run belongs to, tagged sweep_id (or $LISS_SWEEP_ID)")
    flush_timeout: float = opt(60.0, "seconds the end of a run waits for an unreachable "
                               "server before writing records to the local store", ge=0.0)
    log_system_metrics: bool = opt(True, "log CPU, memory and GPU use (system/...) at "
                                   "train.log_every")
    log_checkpoints: bool = opt(False, "also upload the final checkpoint as an artifact")


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.dir) / self.run.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- introspection


def leaves(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field]]:
    """Yield (dotted key, field) for every leaf of the config tree."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaves(hints[f.name], key + ".")
        else:
            yield key, f


def _leaf_types() -> dict[str, Any]:
    out: dict[str, Any] = {}
    sections = typing.get_type_hints(Config)
    for section, section_cls in sections.items():
        for name, hint in typing.get_type_hints(section_cls).items():
            out[f"{section}.{name}"] = hint
    return out


LEAF_TYPES: dict[str, Any] = _leaf_types()
LEAF_FIELDS: dict[str, dataclasses.Field] = dict(leaves())


def _did_you_mean(key: str) -> str:
    names = list(LEAF_TYPES) + [k.split(".")[0] for k in LEAF_TYPES]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if not close:  # `lr` -> `optim.lr`: match on the leaf name alone
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in LEAF_TYPES}
        hit = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_leaf), n=1, cutoff=0.75)
        close = [by_leaf[hit[0]]] if hit else []
    return f"; did you mean {close[0]}?" if close else ""


# --------------------------------------------------------------------------- coercion


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        return "a list of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Coerce a YAML/CLI value to the leaf's declared type, or raise ConfigError."""
    if typing.get_origin(hint) is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, value, f"must be {_type_name(hint)}")
        return list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, value, "must be true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, value, "must be an integer")
    if hint is float:
        number = _as_float(value)
        if number is None:
            raise ConfigError(key, value, "must be a number")
        if not math.isfinite(number):  # nan passes every range check, inf every lower bound
            raise ConfigError(key, value, "must be a finite number")
        return number
    if hint is str:
        if isinstance(value, bool):  # YAML reads `true` for channels_last: keep it as text
            return "true" if value else "false"
        if isinstance(value, int | float):  # `run.name=7` reads as a number
            return str(value)
        if value is None and key == "tracking.uri":  # `tracking.uri: null`
            return "none"
        if not isinstance(value, str):
            raise ConfigError(key, value, "must be a string")
        return value
    raise TypeError(f"unsupported config annotation for {key}: {hint}")


def _as_float(value: Any) -> float | None:
    """A number as a float (None if it is not one); PyYAML reads `1e-4` (no dot) as a string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- loading


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and key not in LEAF_TYPES:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", parsed YAML scalar/list)."""
    if "=" not in text:
        raise ConfigError(text, None, "overrides are written key=value, e.g. train.max_steps=50")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def from_flat(flat: Mapping[str, Any], base: Config | None = None) -> Config:
    """Apply dotted-key values to a copy of `base` (defaults when None), then validate."""
    cfg = from_dict(base.to_dict()) if base else Config()  # a deep copy
    for key, value in flat.items():
        if key not in LEAF_TYPES:
            if key in dataclasses.asdict(cfg):
                raise ConfigError(key, value, "is a section; set one of its keys, e.g. "
                                  f"{next(k for k in LEAF_TYPES if k.startswith(key + '.'))}=...")
            raise ConfigError(key, value, "unknown key" + _did_you_mean(key))
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, _coerce(key, value, LEAF_TYPES[key]))
    validate(cfg)
    return cfg


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build a Config from nested plain data (e.g. a checkpoint's `config` entry)."""
    cfg = Config()
    for key, value in _flatten(data).items():
        if key not in LEAF_TYPES:
            raise ConfigError(key, value, "unknown key" + _did_you_mean(key))
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, _coerce(key, value, LEAF_TYPES[key]))
    return cfg


def resolve_file(ref: str | Path, shipped: Callable[[], Mapping[str, Path]], key: str,
                 missing: str, what: str) -> Path:
    """A config or sweep argument as a file: an existing file wins, else the name of a shipped
    one (`quickstart` or `quickstart.yaml`), else a ConfigError that lists the shipped names."""
    path = Path(ref)
    if path.is_file():
        return path
    names = shipped()
    found = names.get(path.name.removesuffix(".yaml")) if path.parent == Path(".") else None
    if found is None:
        raise ConfigError(key, str(ref), f"{missing}, and not the name of a shipped {what} "
                          f"({', '.join(names)})")
    return found


def config_file(ref: str | Path) -> Path:
    """A config file by path or by the name of a shipped config (`liss config list`)."""
    return resolve_file(ref, resources.shipped_configs, "config", "file not found", "config")


def _read(path: Path) -> dict[str, Any]:
    """The dotted keys a YAML config file sets."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError("config", str(path), f"is not valid YAML{where}") from None
    if not isinstance(data, Mapping):
        raise ConfigError("config", str(path), "must be a YAML mapping of sections")
    return _flatten(data)


def _layers(ref: str | Path | None, overrides: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """Dotted key -> (value, where it was set): the config file, named as given, then the
    `key=value` overrides, later ones winning."""
    layers: dict[str, tuple[Any, str]] = {}
    if ref is not None:
        layers.update((k, (v, str(ref))) for k, v in _read(config_file(ref)).items())
    for text in overrides:
        key, value = parse_override(text)
        layers[key] = (value, "override")
    return layers


def load(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML config (a path or a shipped config's name; the defaults when None), apply
    `key=value` overrides and validate."""
    return from_flat({k: v for k, (v, _) in _layers(path, overrides).items()})


def provenance(path: str | Path | None = None,
               overrides: Sequence[str] = ()) -> tuple[Config, dict[str, str]]:
    """`load`, and for each value that differs from its default where it was set: the config
    as named (`quickstart` or `configs/quickstart.yaml`) or `override`."""
    layers = _layers(path, overrides)
    cfg = from_flat({k: v for k, (v, _) in layers.items()})
    values, defaults = flatten(cfg), flatten(Config())
    return cfg, {k: layers[k][1] for k, v in values.items() if v != defaults[k] and k in layers}


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def with_tasks(cfg: Config, names: Sequence[str]) -> Config:
    """A validated copy of `cfg` training `names` (what `auto` resolved to)."""
    return from_flat({"tasks.auxiliary_tasks": list(names)}, base=cfg)


def flatten(cfg: Config) -> dict[str, Any]:
    """Dotted key -> value, for MLflow params and diffs."""
    return _flatten(cfg.to_dict())


# --------------------------------------------------------------------------- validation


def _check_ranges(cfg: Config) -> None:
    for key, f in LEAF_FIELDS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        m = f.metadata
        if m.get("choices") is not None:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if item not in m["choices"]:
                    allowed = ", ".join(map(str, m["choices"]))
                    raise ConfigError(key, value if not isinstance(value, list) else item,
                                      f"must be one of {allowed}" + _suggest(item, m["choices"]))
        if m.get("ge") is not None and value < m["ge"]:
            raise ConfigError(key, value, f"must be >= {m['ge']}")
        if m.get("gt") is not None and value <= m["gt"]:
            raise ConfigError(key, value, f"must be > {m['gt']}")
        if m.get("le") is not None and value > m["le"]:
            raise ConfigError(key, value, f"must be <= {m['le']}")


def _suggest(value: object, choices: Sequence[Any]) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def selectable_metrics(cfg: Config) -> list[str]:
    """Every metric name a run with `cfg` computes at validation, for `train.best_metric`."""
    s, t = cfg.schedule, cfg.train
    names = []
    tasks = auto_tasks(with_depth=True) if cfg.tasks.is_auto else cfg.tasks.auxiliary_tasks
    for d in "AB":
        for task in specs_of(tasks):
            names += [f"val/{d}/{task.name}_acc"] if task.metric == "acc" else []
            names.append(f"val/{d}/{task.name}_loss")
        names += [f"val/{d}/cycle_l1", f"val/{d}/idt_l1"]
        if s.task_schedule == "liss" or s.repr_mode == "distillation":
            names.append(f"val/{d}/distill_l1")
    paired = PAIRED_METRICS if t.eval_every else ()
    fid = ("fid", "kid", "kid_std") if t.eval_fid else ()
    for n in ("A2B", "B2A"):
        names += [f"val/{n}_{p}{k}" for p in ("", "identity_") for k in paired]
        names += [f"val/{n}_{k}" for k in fid]
    return names


def validate(cfg: Config) -> None:
    """Raise ConfigError for any out-of-range value or inconsistent combination."""
    _check_ranges(cfg)
    d, s = cfg.data, cfg.schedule
    if d.crop_size > d.load_size and d.preprocess in RESIZING_MODES:
        raise ConfigError("data.crop_size", d.crop_size,
                          f"must be <= data.load_size ({d.load_size}) with data.preprocess="
                          f"{d.preprocess}")
    if d.crop_size < 16:
        raise ConfigError("data.crop_size", d.crop_size, "must be >= 16 (two stride-2 "
                          "downsamplings and a 3x3 jigsaw grid)")
    if d.crop_size % STRIDE:
        raise ConfigError("data.crop_size", d.crop_size, f"must be a multiple of {STRIDE} (the "
                          "generator's stride: its output would not match its input's size)")
    m = cfg.model
    smallest = min_discriminator_input(m.n_layers_D, instance_norm=m.norm == "instance",
                                       rotation_head=m.D_rotation)
    if d.crop_size < smallest:
        raise ConfigError("data.crop_size", d.crop_size, f"must be >= {smallest} for a "
                          f"discriminator of model.n_layers_D={m.n_layers_D} with "
                          f"model.norm={m.norm} (its last maps would be a single pixel)")
    tasks = cfg.tasks.auxiliary_tasks
    if len(set(tasks)) != len(tasks):
        raise ConfigError("tasks.auxiliary_tasks", tasks, "lists a task twice")
    if AUTO in tasks and len(tasks) > 1:
        raise ConfigError("tasks.auxiliary_tasks", tasks, "auto stands alone (it picks the "
                          "tasks); list task names instead")
    if not cfg.tasks.is_auto:
        cfg.tasks.auxiliary_tasks = [s.name for s in specs_of(tasks)]
    needs_tasks = s.task_schedule.startswith("representational") or s.task_schedule == "additional"
    if needs_tasks and not tasks:
        raise ConfigError("tasks.auxiliary_tasks", tasks,
                              f"{s.task_schedule} needs at least one auxiliary task")
    if s.repr_mode == "distillation" and s.task_schedule in ("parallel", "sequential"):
        why = ("parallel never switches, so there is no past encoder to distil from"
               if s.task_schedule == "parallel"
               else "sequential with distillation is the liss schedule: "
               "set schedule.task_schedule=liss")
        raise ConfigError("schedule.repr_mode", s.repr_mode,
                          f"distillation is not meaningful with task_schedule="
                          f"{s.task_schedule} ({why})")
    t = cfg.train
    if t.eval_fid and not t.eval_every:
        raise ConfigError("train.eval_fid", True, "needs train.eval_every > 0 (when to compute)")
    if t.best_metric and t.best_metric not in (names := selectable_metrics(cfg)):
        hint = (" (translation metrics need train.eval_every > 0, FID/KID train.eval_fid)"
                if t.best_metric.startswith(("val/A2B_", "val/B2A_")) else "")
        raise ConfigError("train.best_metric", t.best_metric,
                          f"is not computed by this config{hint}; one of: {', '.join(names)}")
    if cfg.optim.name in ("", None):
        raise ConfigError("optim.name", cfg.optim.name, "must name an optimizer, e.g. radam")
    if cfg.model.norm == "batch" and cfg.data.batch_size == 1:  # per rank: check_per_rank_batch
        raise ConfigError("model.norm", "batch", "batch norm needs data.batch_size >= 2 (the "
                          "global batch; each rank's share is checked when training starts)")
    if not cfg.run.name or "/" in cfg.run.name or cfg.run.name in (".", ".."):
        raise ConfigError("run.name", cfg.run.name, "must be a non-empty folder name without '/'")
    uri = cfg.tracking.uri
    if uri and uri != "none" and "://" not in uri and not uri.startswith("sqlite:"):
        raise ConfigError("tracking.uri", uri, "must be empty, none, http(s)://..., "
                          "sqlite:///path or file:///path")
    scheme = uri.split(":", 1)[0] if uri and uri != "none" else ""
    if scheme and scheme not in ("http", "https", "sqlite", "file", "databricks", "postgresql",
                                 "mysql"):
        raise ConfigError("tracking.uri", uri, f"unknown scheme {scheme!r}; use http(s)://..., "
                          "sqlite:///path or none")


def check_per_rank_batch(cfg: Config, world_size: int) -> None:
    """ConfigError when the global batch does not split evenly over `world_size` ranks, or
    batch norm would see one image per rank; `validate` cannot, the world size comes later."""
    batch = cfg.data.batch_size
    if batch % world_size:
        raise ConfigError("data.batch_size", batch,
                          f"must be divisible by the world size ({world_size})")
    per_rank = batch // world_size
    if cfg.model.norm == "batch" and per_rank < 2:
        raise ConfigError("model.norm", "batch", f"batch norm needs >= 2 images per rank; "
                          f"data.batch_size={batch} over {world_size} ranks gives {per_rank}")


# --------------------------------------------------------------------------- default.yaml


def _render(cfg: Config, header: str, comment: Callable[[str, Any], str]) -> str:
    """A config as sectioned YAML, each leaf followed by `# comment` unless that is empty."""
    lines = [header, ""]
    for section, values in cfg.to_dict().items():
        lines.append(f"{section}:")
        for name, value in values.items():
            rendered = yaml.safe_dump(value, default_flow_style=True).strip()
            rendered = rendered.removesuffix("\n...").removesuffix("...").strip()
            if isinstance(value, str) and value in ("", "true", "false"):
                rendered = f'"{value}"'
            note = comment(f"{section}.{name}", value)
            lines.append(f"  {name}: {rendered}" + (f"  # {note}" if note else ""))
        lines.append("")
    return "\n".join(lines)


def render_defaults() -> str:
    """`configs/default.yaml`: every key with its default and a one-line comment."""
    def comment(key: str, value: Any) -> str:
        meta = LEAF_FIELDS[key].metadata
        if meta.get("choices") and not isinstance(value, list):
            return meta["help"] + f" [{' | '.join(map(str, meta['choices']))}]"
        return meta["help"]

    return _render(Config(), "# Every liss option with its default. Generated by "
                   "`liss config defaults`.", comment)


def render_provenance(cfg: Config, sources: Mapping[str, str]) -> str:
    """`liss config show`: the resolved config, loadable as it is; each value that differs
    from its default says where it was set."""
    return _render(cfg, "# Resolved by `liss config show`; `# from ...` marks each value that "
                   "differs from its default.",
                   lambda key, _: f"from {sources[key]}" if key in sources else "")
