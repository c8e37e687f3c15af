"""One benchmark configuration per child process (clean peak-memory readings), collected into
a markdown table. The child is a benchmark script run with `--one`; it prints one JSON line
last."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

TAIL = 800  # characters of a failed child's stderr worth showing


class ChildError(RuntimeError):
    """A child that failed or ran out of time; the message ends with its stderr's tail."""


class ChildTimeoutError(ChildError):
    """A child stopped at its time limit."""


def run_json(script: str | Path, args: list[str], env: Mapping[str, str] | None = None,
             timeout: float | None = None) -> dict:
    """`python <script> --one *args`'s last stdout line, parsed. The child runs in its own
    process group, killed whole on a timeout or an interrupt, so no loader worker or compile
    process outlives it (or keeps its pipes open)."""
    proc = subprocess.Popen([sys.executable, str(script), "--one", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ if env is None else env),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise ChildTimeoutError(f"timed out after {timeout:.0f} s\n{err[-TAIL:]}") from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if proc.returncode:
        raise ChildError(f"exit status {proc.returncode}\n{err[-TAIL:]}")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise ChildError(f"no JSON result on stdout\n{(out + err)[-TAIL:]}") from None


def run_child(args: list[str], label: str) -> dict | None:
    """This script's `--one *args` result, or None (reason on stderr) if it failed."""
    try:
        return run_json(sys.argv[0], args)
    except ChildError as e:
        print(f"{label}: failed, {e}", file=sys.stderr)
        return None


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
