"""Sweep specs: a base config, fixed overrides, and axes whose product defines the runs.

```yaml
name: schedules                      # prefix of run names, MLflow parent run (default: file stem)
base: ../quickstart.yaml             # base config, relative to this file
overrides: {train.max_steps: 300}    # applied to every point
axes:                                # cartesian product, in this order
  schedule.task_schedule: [parallel, sequential, liss, representational]
  schedule.repr_mode: [freeze, flow, distillation]
  run.seed: [0, 1, 2]
points: []                           # extra explicit points (dicts of overrides)
exclude:                             # drop points matching every key of an entry;
  - {schedule.task_schedule: [parallel, sequential, liss],   # a list value = any of
     schedule.repr_mode: [flow, distillation]}
resources: {...}                     # per-run resources, read by the launchers
slurm: {...}                         # SLURM-only settings
k8s: {...}                           # Kubernetes-only settings
tracking_uri: ""                     # one MLflow store for the whole sweep (see below)
```

Every point's config is resolved and validated before anything is submitted; one bad
point stops the whole sweep with an error naming the point and the key.

All runs of a sweep share one folder, `<run.dir>/<name>/<point>`, and one MLflow store (the
spec's `tracking_uri`, else the base config's `tracking.uri`, else `$MLFLOW_TRACKING_URI`,
else the project store `sqlite:///<run.dir>/mlflow.db` that every run under `run.dir` logs
to — or `<run.dir>/<name>/mlflow.db` for a sweep an earlier version started there), so the
MLflow compare view sees them side by side. The sweep sets those keys (and
`train.resume=auto`, so a requeued point continues) in every point's overrides; axes and
points may not set them.

`liss sweep SPEC --set key=value ...` changes the spec for one invocation (see `with_sets`).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from liss import config as config_lib
from liss.config import Config, ConfigError
from liss.resources import shipped_sweeps
from liss.store import configured_uri, has_store, store_uri
from liss.train.optim import optimizer_class

SPEC_KEYS = {"name", "base", "overrides", "axes", "points", "exclude", "resources", "slurm",
             "k8s", "tracking_uri"}
MAX_NAME = 52  # leaves room for k8s suffixes within the 63-char DNS label limit
# Per-run resources every launcher reads the same way (integers; mem_gb a number).
RESOURCE_KEYS = {"nodes", "nproc_per_node", "gpus_per_node", "cpus_per_task", "mem_gb",
                 "timeout_min"}
SLURM_KEYS = {"partition", "account", "qos", "constraint", "additional_parameters", "setup",
              "signal_delay_s", "max_num_timeout", "allow_local_paths"}
# Kubernetes settings (launch/k8s.py: one field of k8s.Settings each).
K8S_KEYS = {"context", "namespace", "image", "image_pull_policy", "data_pvc", "runs_pvc",
            "data_root", "tracking_uri", "gpu_resource", "service_account", "priority_class",
            "queue", "nodes", "gpus_per_node", "nproc_per_node", "cpus_per_task",
            "backoff_limit", "mem_gb", "shm_gb", "node_selector", "tolerations"}
# The spec sections `--set <section>.<key>=value` reaches; any other key is a config key.
SET_SECTIONS = {"resources": RESOURCE_KEYS, "slurm": SLURM_KEYS, "k8s": K8S_KEYS}
# Set by the sweep for every point; a spec may not set them.
SWEEP_KEYS = ("run.name", "train.resume", "tracking.parent_run_id", "tracking.sweep_id")
# Shared by all points (one folder, one MLflow store): fixed `overrides` only.
SHARED_KEYS = ("run.dir", "tracking.uri", "tracking.experiment")


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its readable name, the overrides that define it, its config."""

    name: str
    overrides: dict[str, Any]
    config: Config

    def override_args(self) -> list[str]:
        """`key=value` strings that rebuild this point's config from the base file."""
        return [f"{k}={_yaml_scalar(v)}" for k, v in self.overrides.items()]


@dataclass
class SweepSpec:
    name: str
    base: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)
    k8s: dict[str, Any] = field(default_factory=dict)
    tracking_uri: str = ""
    source: Path | None = None


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def slug(text: str) -> str:
    """Lowercase DNS-1123 label characters: usable as run, SLURM and Kubernetes names."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", str(text).lower())).strip("-")


def load_spec(ref: str | Path, sets: Sequence[str] = ()) -> SweepSpec:
    """A validated sweep spec by path, or by the name of a shipped one (`liss config list`);
    `sets` are `--set key=value` changes (see `with_sets`)."""
    path = config_lib.resolve_file(ref, shipped_sweeps, "sweep", "sweep spec not found",
                                   "sweep spec")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, Mapping):
        raise ConfigError("sweep", str(path), "must be a YAML mapping")
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"sweep.{unknown[0]}", data[unknown[0]],
                          f"unknown sweep key; known: {', '.join(sorted(SPEC_KEYS))}")
    data = with_sets(data, sets)
    if data.get("name") is None:
        data["name"] = path.stem
        if slug(path.stem) != path.stem:
            raise ConfigError("sweep.name", None, f"not given, and the file name {path.name!r} "
                              "cannot be one (lowercase letters, digits and '-'): set name:")
    if not data["name"] or slug(data["name"]) != data["name"]:
        raise ConfigError("sweep.name", data["name"],
                          "must be lowercase letters, digits and '-'")
    base = data.get("base")
    overrides = _mapping(data, "overrides")
    axes = _mapping(data, "axes")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.axes.{key}", values, "must be a non-empty list")
    points, exclude = _mappings(data, "points"), _mappings(data, "exclude")
    _check_keys("sweep.overrides", overrides, SWEEP_KEYS)
    _check_keys("sweep.axes", axes, SWEEP_KEYS + SHARED_KEYS)
    for i, entry in enumerate(points):
        _check_keys(f"sweep.points[{i}]", entry, SWEEP_KEYS + SHARED_KEYS)
    resources = _mapping(data, "resources")
    _check_resources(resources)
    slurm, k8s = _mapping(data, "slurm"), _mapping(data, "k8s")
    _check_known("sweep.slurm", slurm, SLURM_KEYS)
    _check_known("sweep.k8s", k8s, K8S_KEYS)
    return SweepSpec(
        name=data["name"],
        base=(path.parent / base).resolve() if base else None,
        overrides=overrides,
        axes={k: list(v) for k, v in axes.items()},
        points=points,
        exclude=exclude,
        resources=resources,
        slurm=slurm,
        k8s=k8s,
        tracking_uri=str(data.get("tracking_uri") or ""),
        source=path.resolve(),
    )


def with_sets(data: Mapping[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """A spec's data with `--set key=value` entries applied, for every point: `resources.KEY`,
    `slurm.KEY` and `k8s.KEY` set that section's key; any other key is a config key, set like
    `overrides` (after them). A key the axes or points vary, or one the sweep sets itself
    (`run.name`...), is refused: it cannot be one value for every point."""
    data = dict(data)
    varied = set(_mapping(data, "axes")).union(*_mappings(data, "points"))
    for text in sets:
        key, sep, _ = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", text, "is written key=value, e.g. "
                              "train.max_steps=50 or slurm.partition=gpu")
        key, value = config_lib.parse_override(text)
        where = f"--set {key}"
        section, _, leaf = key.partition(".")
        if section in SET_SECTIONS:
            _check_known(f"--set {section}", {leaf: value}, SET_SECTIONS[section])
            if section == "resources":
                _check_resources({leaf: value}, "--set resources")
            data[section] = {**_mapping(data, section), leaf: value}
            continue
        if key in SWEEP_KEYS:
            raise ConfigError(where, value, "set by the sweep for every point")
        if key in varied:
            raise ConfigError(where, value, "the sweep's axes or points vary it, so it cannot "
                              "be one value for every point")
        try:
            config_lib.from_dict({key: value})  # the key exists and the value has its type
        except ConfigError as e:
            raise ConfigError(where, value, f"{e.allowed} (--set takes a config key, or "
                              f"{', '.join(f'{s}.KEY' for s in SET_SECTIONS)})") from None
        data["overrides"] = {**_mapping(data, "overrides"), key: value}
    return data


def _mapping(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"sweep.{key}", value, "must be a mapping of key: value")
    return dict(value)


def _mappings(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"sweep.{key}", value, "must be a list of mappings of overrides")
    return [dict(v) for v in value]


def _check_keys(where: str, entry: Mapping[str, Any], reserved: tuple[str, ...]) -> None:
    for key in entry:
        if key in reserved:
            what = ("set by the sweep for every point" if key in SWEEP_KEYS else
                    "shared by all points of a sweep: set it in `overrides` (or tracking_uri)")
            raise ConfigError(f"{where}.{key}", entry[key], what)


def _check_known(where: str, entry: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", entry[unknown[0]],
                          f"unknown key; known: {', '.join(sorted(known))}")


def _check_resources(resources: Mapping[str, Any], where: str = "sweep.resources") -> None:
    _check_known(where, resources, RESOURCE_KEYS)
    for key, value in resources.items():
        number = int | float if key == "mem_gb" else int
        if isinstance(value, bool) or not isinstance(value, number) or value < 0:
            raise ConfigError(f"{where}.{key}", value,
                              "must be a non-negative " + ("number" if key == "mem_gb"
                                                           else "integer"))


def base_config(spec: SweepSpec) -> Config:
    """The base config with the sweep's fixed overrides: what every point shares."""
    try:
        return config_lib.load(spec.base, [f"{k}={_yaml_scalar(v)}"
                                           for k, v in spec.overrides.items()])
    except ConfigError as e:
        raise ConfigError(f"sweep overrides: {e.key}", e.value, e.allowed) from None


def sweep_dir(spec: SweepSpec) -> Path:
    """`<run.dir>/<sweep name>`: the parent of every point's run folder."""
    return Path(base_config(spec).run.dir) / spec.name


def tracking_uri(spec: SweepSpec) -> str:
    """The one MLflow store all points log to ("none" when tracking is off)."""
    configured = spec.tracking_uri or configured_uri(base_config(spec))
    if configured:
        return configured
    if has_store(sweep_dir(spec)):  # started by an earlier version: continue it there
        return store_uri(sweep_dir(spec))
    return store_uri(Path(base_config(spec).run.dir))


def sweep_id(spec: SweepSpec) -> str:
    """Stable id of a sweep: its name and where its runs live, so re-running the same spec
    finds its MLflow parent run again while a same-named sweep elsewhere does not."""
    where = hashlib.sha1(str(sweep_dir(spec).resolve()).encode()).hexdigest()[:8]
    return f"{spec.name}-{where}"


def _excluded(point: Mapping[str, Any], rules: list[dict[str, Any]]) -> bool:
    def matches(rule: Mapping[str, Any]) -> bool:
        return all(point.get(k) in (v if isinstance(v, list) else [v]) for k, v in rule.items())

    return any(matches(r) for r in rules)


def _point_name(sweep: str, assignment: Mapping[str, Any], varying: list[str]) -> str:
    parts = [sweep]
    for key in varying:
        value = assignment.get(key)
        if value is None:
            continue
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "seed":
            parts.append(f"s{value}")
        elif isinstance(value, list):  # tasks.auxiliary_tasks: [depth, gray] / []
            parts.append("+".join(map(str, value)) if value else f"no-{leaf}")
        else:
            parts.append(str(value))
    name = slug("-".join(parts))
    return name[:MAX_NAME].rstrip("-")


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of the sweep, validated; ConfigError names the first bad point."""
    keys = list(spec.axes)
    assignments = [dict(zip(keys, combo, strict=True))
                   for combo in itertools.product(*spec.axes.values())] if keys else []
    assignments += spec.points
    if not assignments:
        assignments = [{}]
    assignments = [a for a in assignments if not _excluded(a, spec.exclude)]
    if not assignments:
        raise ConfigError("sweep.exclude", spec.exclude, "excludes every point")
    varying = list(dict.fromkeys(k for a in assignments for k in a))
    varying = [k for k in varying if len({str(a.get(k)) for a in assignments}) > 1]

    shared = {"run.dir": str(sweep_dir(spec)), "tracking.uri": tracking_uri(spec),
              "train.resume": "auto"}
    points: list[Point] = []
    names: set[str] = set()
    for assignment in assignments:
        name = _point_name(spec.name, assignment, varying)
        if name in names:
            raise ConfigError("sweep", name, "two points get the same run name; make the "
                              "axes or points differ")
        names.add(name)
        overrides = {**spec.overrides, **assignment, **shared, "run.name": name}
        try:
            cfg = config_lib.load(spec.base, [f"{k}={_yaml_scalar(v)}"
                                              for k, v in overrides.items()])
            optimizer_class(cfg.optim.name)  # the one check that needs torch
        except ConfigError as e:
            raise ConfigError(f"point {name}: {e.key}", e.value, e.allowed) from None
        points.append(Point(name, overrides, cfg))
    return points
