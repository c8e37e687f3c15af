"""One benchmark configuration per child process (clean peak-memory readings), collected into
a markdown table. The child is the benchmark script itself with `--one`; it prints one JSON
line last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path


def run_child(args: list[str], label: str) -> dict | None:
    """`python <script> --one *args`'s JSON result, or None (reason on stderr) if it failed."""
    cmd = [sys.executable, sys.argv[0], "--one", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if proc.returncode:
        print(f"{label}: failed\n{proc.stderr[-800:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def collect(points: Iterable[tuple[list[str], str]], row: Callable[[dict], str], head: str,
            json_path: Path | None) -> None:
    """Run every (args, label) point, echo each row as it lands, print the table at the end
    and write the raw rows to `json_path` if given."""
    rows = []
    for args, label in points:
        if (result := run_child(args, label)) is not None:
            rows.append(result)
            print(row(result), file=sys.stderr, flush=True)
    print("\n".join([head, *map(row, rows)]))
    if json_path:
        json_path.write_text(json.dumps(rows, indent=1))
