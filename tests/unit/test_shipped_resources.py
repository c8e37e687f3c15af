"""The shipped YAML (configs/, configs/sweeps/, k8s/) is found from the source tree, the wheel's
copy wins when there is one, and pyproject.toml maps all of it (and every package) into the
wheel. tests/integration/test_installed_wheel.py builds and installs the wheel itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from liss import resources

REPO = Path(__file__).resolve().parents[2]


def test_source_tree_lookup_finds_every_shipped_file() -> None:
    assert resources.shipped_configs() == {
        p.stem: p for p in sorted((REPO / "configs").glob("*.yaml"))}
    assert resources.shipped_sweeps() == {
        p.stem: p for p in sorted((REPO / "configs" / "sweeps").glob("*.yaml"))}
    assert {"quickstart", "horse2zebra", "default"} <= set(resources.shipped_configs())
    assert {"schedules", "smoke"} <= set(resources.shipped_sweeps())
    kustomization = resources.shipped_dir("k8s") / "base" / "kustomization.yaml"
    assert kustomization == REPO / "k8s" / "base" / "kustomization.yaml"
    assert kustomization.is_file()


def test_the_wheels_copy_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs" / "sweeps").mkdir(parents=True)
    (tmp_path / "configs" / "only-here.yaml").write_text("run: {name: x}\n")
    monkeypatch.setattr(resources.resources, "files", lambda package: tmp_path)
    assert resources.shipped_configs() == {"only-here": tmp_path / "configs" / "only-here.yaml"}
    assert resources.shipped_dir("k8s") == REPO / "k8s"  # not in the fake wheel: the checkout's


def test_unknown_tree_is_refused() -> None:
    with pytest.raises(ValueError, match="not shipped"):
        resources.shipped_dir("docs")


def _setuptools() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="in the standard library from Python 3.11")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_pyproject_lists_every_package_and_maps_the_shipped_trees() -> None:
    table = _setuptools()
    code = {".".join(p.parent.relative_to(REPO).parts)
            for top in ("liss", "launch") for p in (REPO / top).rglob("__init__.py")}
    shipped = {f"liss.{name}": name for name in resources.SHIPPED}
    assert set(table["packages"]) == code | set(shipped)
    assert table["package-dir"] == shipped


def test_package_data_globs_cover_every_shipped_file() -> None:
    data = _setuptools()["package-data"]
    for name in resources.SHIPPED:
        root = REPO / name
        matched = {p for pattern in data[f"liss.{name}"] for p in root.glob(pattern)}
        files = {p for p in root.rglob("*") if p.is_file()}
        assert files and files == matched, f"{name}/: files package-data does not ship"
