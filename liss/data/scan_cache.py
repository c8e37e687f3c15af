"""The start-up scan's verdicts, remembered per file across starts.

Why: the scan decodes every image (and depth map) before training, so a 100k-image dataset
pays minutes again at every resume after a preemption. A file whose size and modification
time (ns) are what they were keeps its verdict (why it is unusable, or its width x height);
only new or changed files are decoded again.

One JSON file per dataset root (`cache_path`), by default under `run.dir/.scan-cache/`:
wherever runs persist (a shared `run.dir` on SLURM, the runs volume on Kubernetes) the cache
does too, every run of the project shares it, and nothing is written into the dataset. It is
replaced atomically; a cache that cannot be read (corrupt, another version) is ignored and
rewritten, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from liss.data.check import probe_file

log = logging.getLogger(__name__)
VERSION = 1
Verdict = tuple[str | None, tuple[int, int] | None]  # check.probe_file's (reason, size)


def cache_path(setting: str, run_dir_parent: str | Path, root: Path) -> Path | None:
    """Where `data.scan_cache` keeps the verdicts of `root`; None when it is `none`."""
    if setting == "none":
        return None
    if setting != "auto":
        return Path(setting)
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(run_dir_parent) / ".scan-cache" / f"{root.resolve().name}-{digest}.json"


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class ScanCache:
    """`probe` = `check.probe_file`, answered from the cache while a file is unchanged.

    Thread-safe for the scan's thread pool (each call writes one dict entry). New verdicts
    are in `fresh` until `save`; ranks hand theirs to rank 0 with `merge`.
    """

    def __init__(self, path: Path | None, root: Path):
        self.path, self.given_root, self.root = path, root, root.resolve()
        self.entries: dict[str, list[Any]] = {} if path is None else self._read(path)
        self.fresh: dict[str, list[Any]] = {}
        self.hits = 0

    def _read(self, path: Path) -> dict[str, list[Any]]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("%s: scan cache unreadable (%s); rescanning", path, e)
            return {}
        if not isinstance(data, dict) or data.get("version") != VERSION \
                or data.get("root") != str(self.root):
            return {}
        return data.get("files", {})

    def _key(self, path: Path) -> str:
        """The path under the root (files are listed from it: no resolving per file)."""
        try:
            return path.relative_to(self.given_root).as_posix()
        except ValueError:
            return str(path.resolve())

    def probe(self, path: Path) -> Verdict:
        stat = _stat(path)
        if stat is None:  # unreadable now: say why, remember nothing
            return probe_file(path)
        key = self._key(path)
        entry = self.fresh.get(key) or self.entries.get(key)
        if entry is not None and tuple(entry[:2]) == stat:
            self.hits += 1
            return entry[2], None if entry[3] is None else tuple(entry[3])
        reason, size = probe_file(path)
        self.fresh[key] = [*stat, reason, None if size is None else list(size)]
        return reason, size

    def merge(self, fresh: dict[str, list[Any]]) -> None:
        """Take verdicts another rank found (before `save`)."""
        self.fresh.update(fresh)

    def save(self) -> None:
        """Write the old and new verdicts (atomically), when there is anything new."""
        if self.path is None or not self.fresh:
            return
        files = {**self.entries, **self.fresh}
        payload = json.dumps({"version": VERSION, "root": str(self.root), "files": files},
                             separators=(",", ":"))
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".scan-", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(payload)
            os.replace(tmp, self.path)
        except OSError as e:  # a cache is an optimisation: training goes on without it
            log.warning("%s: cannot write the scan cache (%s)", self.path, e)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            return
        self.entries, self.fresh = files, {}
