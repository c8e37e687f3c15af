"""A wheel of liss is complete: built from the repository's sources, installed in a fresh
venv and run from a folder outside the repository, `liss train quickstart` trains and
`liss sweep schedules --launcher k8s --dry-run` renders its Jobs, from the wheel's own copies
of configs/ and k8s/.

The wheel is built from a copy of exactly what the Dockerfile installs (pyproject.toml,
README.md, liss/, launch/, configs/, k8s/): an in-place build would leave build/ and
*.egg-info in the checkout, and a stale build/lib could hide a file the wheel misses. The
fresh venv gets no dependencies from the registry (torch alone takes minutes): after the
wheel is installed, a .pth file appends this interpreter's site-packages to its path. Plain
.pth lines add folders without running the .pth files inside them, so the editable install of
the repository there stays out; the test checks that liss and launch come from the venv.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "liss", "launch", "configs", "k8s")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with liss installed from a freshly built wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    # --no-build-isolation: the build uses this environment's setuptools, no registry.
    run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "dist"), "-q"], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("liss-*.whl")
    env_dir = tmp / "venv"
    run([sys.executable, "-m", "venv", str(env_dir)], cwd=tmp)
    python = env_dir / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=tmp)
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                  cwd=tmp).strip()
    Path(purelib, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env_dir


@pytest.fixture
def outside(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder outside the repository, and an environment without PYTHONPATH."""
    assert not tmp_path.is_relative_to(REPO)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")}
    return tmp_path, env


def test_liss_comes_from_the_wheel(venv: Path, outside: tuple[Path, dict[str, str]]) -> None:
    cwd, env = outside
    out = run([str(venv / "bin" / "python"), "-c",
               "import launch, liss, liss.resources as r, torch; "
               "print(liss.__file__, launch.__file__, r.shipped_dir('k8s'), sep='\\n')"],
              cwd, env)
    for path in out.split():
        assert Path(path).is_relative_to(venv), out


def test_train_a_shipped_config_by_name(venv: Path,
                                        outside: tuple[Path, dict[str, str]]) -> None:
    cwd, env = outside
    liss = str(venv / "bin" / "liss")
    run([liss, "data", "synth", "data/synth", "--n-train", "10", "--n-test", "4", "--size",
         "48"], cwd, env)
    run([liss, "train", "quickstart", *TINY, "train.max_steps=2", "tracking.uri=none"], cwd, env)
    status = json.loads((cwd / "runs" / "quickstart" / "status.json").read_text())
    assert status["status"] == "completed" and status["step"] == 2

    shown = run([liss, "config", "show", "quickstart"], cwd, env)
    assert "  task_schedule: liss  # from quickstart" in shown.splitlines()
    listed = run([liss, "config", "list"], cwd, env)
    assert f"in {venv}" in listed and "  quickstart" in listed.splitlines()


def test_k8s_dry_run_of_a_shipped_sweep(venv: Path, outside: tuple[Path, dict[str, str]]) -> None:
    cwd, env = outside
    out = run([str(venv / "bin" / "liss"), "sweep", "schedules", "--launcher", "k8s",
               "--dry-run"], cwd, env)
    manifests = list(yaml.safe_load_all(out))  # a dry run's stdout is the manifests alone
    jobs = [m for m in manifests if m["kind"] == "Job"]
    assert len(jobs) == 18 and all(j["metadata"]["name"].startswith("schedules-") for j in jobs)
    (container,) = jobs[0]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "trainer" and container["args"] == ["/etc/liss/config.yaml"]
    configs = [m for m in manifests if m["kind"] == "ConfigMap"]
    assert len(configs) == 18
    assert yaml.safe_load(configs[0]["data"]["config.yaml"])["data"]["crop_size"] == 64
