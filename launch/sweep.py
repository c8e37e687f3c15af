"""Sweep specs: a base config, fixed overrides, and axes whose product defines the runs.

```yaml
name: schedules                      # sweep name: prefix of run names, MLflow parent run
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
```

Every point's config is resolved and validated before anything is submitted; one bad
point stops the whole sweep with an error naming the point and the key.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from liss import config as config_lib
from liss.config import Config, ConfigError

SPEC_KEYS = {"name", "base", "overrides", "axes", "points", "exclude", "resources", "slurm",
             "k8s", "tracking_uri"}
MAX_NAME = 52  # leaves room for k8s suffixes within the 63-char DNS label limit


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


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("sweep", str(path), "sweep spec not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, Mapping):
        raise ConfigError("sweep", str(path), "must be a YAML mapping")
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"sweep.{unknown[0]}", data[unknown[0]],
                          f"unknown sweep key; known: {', '.join(sorted(SPEC_KEYS))}")
    if not data.get("name") or slug(data["name"]) != data["name"]:
        raise ConfigError("sweep.name", data.get("name"),
                          "must be lowercase letters, digits and '-'")
    base = data.get("base")
    axes = data.get("axes") or {}
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.axes.{key}", values, "must be a non-empty list")
    return SweepSpec(
        name=data["name"],
        base=(path.parent / base).resolve() if base else None,
        overrides=dict(data.get("overrides") or {}),
        axes={k: list(v) for k, v in axes.items()},
        points=[dict(p) for p in data.get("points") or []],
        exclude=[dict(e) for e in data.get("exclude") or []],
        resources=dict(data.get("resources") or {}),
        slurm=dict(data.get("slurm") or {}),
        k8s=dict(data.get("k8s") or {}),
        tracking_uri=str(data.get("tracking_uri") or ""),
        source=path.resolve(),
    )


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
        parts.append(f"s{value}" if leaf == "seed" else slug(str(value)))
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
    varying = list(dict.fromkeys(k for a in assignments for k in a))
    varying = [k for k in varying if len({str(a.get(k)) for a in assignments}) > 1]

    points: list[Point] = []
    names: set[str] = set()
    for assignment in assignments:
        name = _point_name(spec.name, assignment, varying)
        if name in names:
            raise ConfigError("sweep", name, "two points get the same run name; make the "
                              "axes or points differ")
        names.add(name)
        overrides = {**spec.overrides, **assignment, "run.name": name}
        try:
            cfg = config_lib.load(spec.base, [f"{k}={_yaml_scalar(v)}"
                                              for k, v in overrides.items()])
        except ConfigError as e:
            raise ConfigError(f"point {name}: {e.key}", e.value, e.allowed) from None
        points.append(Point(name, overrides, cfg))
    return points
