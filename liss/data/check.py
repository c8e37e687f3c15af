"""Dataset scan behind `liss data check ROOT`: unreadable images, missing depth, small images.

Why: a bad file found mid-training costs a crashed job; found here it costs seconds. Problems
are files or folders a training run cannot use and make the check fail; warnings are usable but
suspicious (an image smaller than the crop is resized up by the loader, an orphan depth map is
ignored) and are only listed. Depth maps are required as `tasks.auxiliary_tasks=auto` would
(when every train/val image has one) or as asked (`depth="require"|"ignore"`); maps that are
not required are not looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from liss.data.layout import depth_path, list_images, list_splits
from liss.data.task_choice import FIX, images_without_depth

REQUIRED_SPLITS = ("trainA", "trainB", "testA", "testB")
OPTIONAL_SPLITS = ("valA", "valB")
SCAN_CHUNK = 32  # images per thread-pool task


@dataclass(frozen=True)
class Issue:
    """One finding: the file or folder concerned and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class CheckReport:
    """Result of `check_dataset`; `ok` is False when there is any problem (warnings allowed)."""

    root: Path
    require_depth: bool = True
    depth_note: str = ""  # under depth="auto": what the run would do and why
    counts: dict[str, int] = field(default_factory=dict)
    depth_maps: int = 0
    problems: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """Problems, then warnings, one `path: reason` per line, then the summary."""
        lines = [str(issue) for issue in self.problems]
        lines += [f"warning: {issue}" for issue in self.warnings]
        lines.append(self._summary())
        if self.depth_note:
            lines.append(self.depth_note)
        if not self.ok:
            files = len({issue.path for issue in self.problems})
            lines.append(f"{_count(len(self.problems), 'problem')} in {_count(files, 'file')}")
        return "\n".join(lines)

    def _summary(self) -> str:
        images = ", ".join(f"{split} {n}" for split, n in self.counts.items()) or "no images"
        depth = (f"{_count(self.depth_maps, 'depth map')}" if self.require_depth
                 else "depth not checked")
        status = "ok" if self.ok else "FAILED"
        return (f"{status}: {self.root}: {images}; {depth}; "
                f"{_count(len(self.warnings), 'warning')}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


Probe = Callable[[Path], tuple[str | None, tuple[int, int] | None]]


def probe_image(path: Path) -> str | None:
    """Why `path` cannot be used as an image, or None when it decodes completely."""
    return probe_file(path)[0]


def probe_file(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """(reason, None) for an unusable file, (None, (width, height)) for a good one.

    The one verdict every scan uses; `scan_cache.ScanCache.probe` remembers it per file."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)", None
    except OSError as e:
        return f"cannot read: {e.strerror}", None
    try:
        with Image.open(path) as im:
            im.load()  # decodes every pixel: catches truncated and corrupt data
            return None, im.size
    except UnidentifiedImageError:
        return "not an image Pillow can identify", None
    except Exception as e:  # any decoder failure (OSError, SyntaxError, ...) = unusable file
        return f"cannot decode: {type(e).__name__}: {e}", None


@dataclass
class _Findings:
    problems: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    depth_maps: int = 0


def _check_image(image: Path, crop_size: int | None, require_depth: bool,
                 probe: Probe = probe_file) -> _Findings:
    found = _Findings()
    reason, size = probe(image)
    if reason is not None:
        found.problems.append(Issue(image, reason))
    elif crop_size is not None and size is not None and min(size) < crop_size:
        found.warnings.append(Issue(
            image, f"{size[0]}x{size[1]} is smaller than crop size {crop_size} "
                   "(usable only when the loader resizes it up)"))
    if require_depth:
        _check_depth(image, found, probe)
    return found


def _check_depth(image: Path, found: _Findings, probe: Probe) -> None:
    depth = depth_path(image)
    if not depth.is_file():
        found.problems.append(Issue(image, f"missing depth map depths/{depth.name}"))
        return
    reason = probe(depth)[0]
    if reason is None:
        found.depth_maps += 1
    else:
        found.problems.append(Issue(depth, f"bad depth map: {reason}"))


def _split_folders(root: Path, report: CheckReport) -> list[Path]:
    """The split folders to scan; missing or empty required ones become problems."""
    folders = []
    for name in REQUIRED_SPLITS:
        folder = root / name
        if not folder.is_dir():
            report.problems.append(Issue(folder, "missing split folder"))
        elif not list_images(folder):
            report.problems.append(Issue(folder, "split folder has no images"))
        folders.append(folder)
    present = [name for name in OPTIONAL_SPLITS if (root / name).is_dir()]
    if len(present) == 1:
        missing = next(n for n in OPTIONAL_SPLITS if n not in present)
        report.problems.append(Issue(root / missing, f"missing: {present[0]} exists, so "
                                                     f"{missing} must too"))
    folders += [root / name for name in present]
    return folders


def _orphan_depths(folder: Path, images: list[Path]) -> list[Issue]:
    stems = {image.stem for image in images}
    depths = folder / "depths"
    if not depths.is_dir():
        return []
    return [Issue(p, f"orphan depth map: no image named {p.stem}.* in {folder.name}")
            for p in sorted(depths.iterdir())
            if p.is_file() and p.suffix.lower() == ".png" and p.stem not in stems]


def check_dataset(root: Path, *, crop_size: int | None = None,
                  depth: str = "auto") -> CheckReport:
    """Decode every image (and depth map) of a CycleGAN-layout dataset, in threads.

    `depth`: "auto" requires maps when every train/val image has one (as training's `auto`
    task choice does), "require" always, "ignore" never."""
    root = Path(root)
    report = CheckReport(root, require_depth=depth == "require")
    if not root.is_dir():
        reason = "not a directory" if root.exists() else "dataset root does not exist"
        report.problems.append(Issue(root, reason))
        return report
    if depth == "auto":
        report.require_depth, report.depth_note = _auto_depth(root)
    require_depth = report.require_depth
    images: list[Path] = []
    for folder in _split_folders(root, report):
        found = list_images(folder)
        if folder.is_dir():
            report.counts[folder.name] = len(found)
        if require_depth:
            report.warnings += _orphan_depths(folder, found)
        images += found
    for found in _scan(images, crop_size, require_depth):
        report.problems += found.problems
        report.warnings += found.warnings
        report.depth_maps += found.depth_maps
    report.problems.sort(key=lambda issue: str(issue.path))
    report.warnings.sort(key=lambda issue: str(issue.path))
    return report


def _auto_depth(root: Path) -> tuple[bool, str]:
    """Whether `auto` would train depth on `root`, and the line that says so."""
    lacking, total = images_without_depth(list_splits(root))
    if not lacking:
        return True, "depth: every train/val image has a map, so auto trains the depth task"
    return False, (f"depth: {len(lacking)} of {total} train/val images have no map, so auto "
                   f"trains without the depth task (compute them: {FIX.format(root=root)})")


def _scan(images: list[Path], crop_size: int | None, require_depth: bool,
          probe: Probe = probe_file) -> list[_Findings]:
    """`_check_image` of every image, in order, decoded in a thread pool (in chunks: most
    answers come from a scan cache, and a task per file would cost more than the answer)."""
    def chunk(start: int) -> list[_Findings]:
        return [_check_image(p, crop_size, require_depth, probe)
                for p in images[start:start + SCAN_CHUNK]]

    with ThreadPoolExecutor() as pool:
        return [f for part in pool.map(chunk, range(0, len(images), SCAN_CHUNK)) for f in part]


def unusable_images(images: list[Path], *, require_depth: bool,
                    probe: Probe = probe_file) -> dict[Path, str]:
    """{image: reason} for the images a loader cannot use: the file itself does not decode
    completely, or its depth map is missing or does not (only looked at when required).

    The scan a training run makes before it starts (`data.on_bad_file`); `probe` is where a
    scan cache plugs in.
    """
    out = {}
    for image, found in zip(images, _scan(images, None, require_depth, probe), strict=True):
        if found.problems:
            out[image] = "; ".join(issue.reason if issue.path == image else str(issue)
                                   for issue in found.problems)
    return out
