"""Where the shipped YAML lives: `configs/` (run configs, `configs/sweeps/` sweep specs) and
`k8s/` (the kustomize tree the Kubernetes launcher renders Jobs from).

The repository keeps both at its top level; pyproject.toml maps them into the wheel as
`liss/configs` and `liss/k8s`. `importlib.resources` finds the wheel's copies; a source tree
(PYTHONPATH) or an editable install has none, and falls back to the repository's folders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED = ("configs", "k8s")


def shipped_dir(name: str) -> Path:
    """The folder of one shipped tree (`configs` or `k8s`), in the wheel or the checkout."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not shipped with liss; one of {', '.join(SHIPPED)}")
    packaged = Path(str(resources.files("liss") / name))
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[1] / name
    if source.is_dir():
        return source
    raise FileNotFoundError(f"liss: the shipped {name}/ folder is missing from this "
                            f"installation (looked in {packaged} and {source}); reinstall liss")


def _by_name(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def shipped_configs() -> dict[str, Path]:
    """Run configs by name: `quickstart` -> .../configs/quickstart.yaml."""
    return _by_name(shipped_dir("configs"))


def shipped_sweeps() -> dict[str, Path]:
    """Sweep specs by name: `schedules` -> .../configs/sweeps/schedules.yaml."""
    return _by_name(shipped_dir("configs") / "sweeps")
