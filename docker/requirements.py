"""Requirement lines for the image build, read before the package source is copied in, so the
dependency layer survives source edits.

    python requirements.py deps pyproject.toml [EXTRA ...]   runtime deps + those of the extras
    python requirements.py pins torch torchvision            `name==version` of what is installed

The pins become a pip constraints file: the base image's CUDA builds of torch and torchvision
already satisfy `torch>=2.6`, and pinning them makes pip fail rather than download a second
PyTorch if some requirement ever asked for another version.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import tomllib  # Python >= 3.11, as in the PyTorch images


def deps(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        sys.exit(f"requirements.py: no extra {unknown[0]!r} in {pyproject}")
    return [*project.get("dependencies", []), *(d for e in extras for d in optional[e])]


def pins(names: list[str]) -> list[str]:
    lines = []
    for name in names:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            print(f"requirements.py: {name} is not installed in the base image; pip will "
                  "install it", file=sys.stderr)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "deps":
        lines = deps(Path(argv[1]), argv[2:])
    elif argv and argv[0] == "pins":
        lines = pins(argv[1:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
