"""`liss translate`: every image of folders or files, batched, at any size, with a contact sheet.

Images are decoded on a thread pool (grayscale, RGBA, CMYK, 16-bit and EXIF-rotated files all
become RGB, as for training), optionally resized so the shorter side is `size`, grouped into
batches of equal shape, translated (padded to the network's stride; tiled above `tile` pixels)
and written under their own names by another pool. A file that cannot be read is reported and
skipped; the others go on.

Output layout, one direction: `OUT/<name>`; both: `OUT/AtoB/<name>`, `OUT/BtoA/<name>`;
with side-by-side pictures in `side_by_side/` beside them; thumbnails in `OUT/thumbs/` and the
contact sheet `OUT/index.html`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from liss.data.images import BadImageError, read_image
from liss.data.layout import list_images
from liss.data.prefetch import prefetch
from liss.eval import tiling
from liss.eval.generators import LoadError, Translator

THUMB = 256
MAX_PENDING = 4  # batches' worth of decoded images waiting for same-shaped company
SAVE_OPTIONS = {".jpg": {"quality": 95}, ".jpeg": {"quality": 95}, ".webp": {"quality": 95}}


@dataclass(frozen=True)
class Options:
    directions: tuple[str, ...] = ("AtoB",)
    batch_size: int = 4
    size: int | None = None  # resize the shorter side to this (keeping the aspect ratio)
    tile: int = 1024  # tile images with a side above this (0: never)
    overlap: int = 128
    side_by_side: bool = False
    png: bool = False  # write PNG whatever the input's format
    workers: int = 2  # decode and encode threads


@dataclass
class Result:
    outputs: dict[Path, dict[str, Path]] = field(default_factory=dict)  # input -> dir -> file
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.outputs) / max(self.seconds, 1e-9)


# ---------------------------------------------------------------------- inputs


def collect_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Image files of folders (top level, as datasets are read) and the files given."""
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise LoadError(f"{item}: no images in this folder")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise LoadError(f"{item}: no such file or folder")
    return list(dict.fromkeys(files))


def output_names(files: list[Path], png: bool) -> dict[Path, str]:
    """Each input's output file name: its own, or `<stem>.png`; refuses collisions."""
    names: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    for f in files:
        name = f"{f.stem}.png" if png else f.name
        if name in seen:
            raise LoadError(f"{f} and {seen[name]} would both be written as {name}; "
                            "translate them into separate folders")
        seen[name] = f
        names[f] = name
    return names


def load_input(path: Path, size: int | None) -> Tensor:
    """[3,H,W] in [-1, 1]; the shorter side resized to `size` (bicubic, antialiased)."""
    image = read_image(path)
    if size:
        h, w = image.shape[-2:]
        scale = size / min(h, w)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        if shape != (h, w):
            image = F.interpolate(image[None], size=shape, mode="bicubic", antialias=True,
                                  align_corners=False)[0].clamp_(0, 1)
    return image * 2 - 1


def quantize(images: Tensor) -> Tensor:
    """[..., H, W] images in [-1, 1] -> uint8, rounded as the written files store them."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_uint8(image: Tensor) -> np.ndarray:
    """[3,H,W] in [-1, 1] -> HxWx3 uint8."""
    return quantize(image).permute(1, 2, 0).numpy()


def save_image(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **SAVE_OPTIONS.get(path.suffix.lower(), {}))


def save_thumb(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    im.thumbnail((THUMB, THUMB))
    im.save(path, quality=90)


# ---------------------------------------------------------------------- plumbing


def shape_batches(items: Iterable[tuple[Path, Tensor]], batch_size: int, tile: int
                  ) -> Iterator[list[tuple[Path, Tensor]]]:
    """Batches of same-shaped images; an image to be tiled goes alone. At most
    MAX_PENDING batches' worth of images wait, so memory stays bounded on mixed sizes."""
    pending: dict[tuple[int, ...], list[tuple[Path, Tensor]]] = {}
    for path, image in items:
        if tiling.needs_tiling(image.shape, tile):
            yield [(path, image)]
            continue
        group = pending.setdefault(tuple(image.shape), [])
        group.append((path, image))
        if len(group) == batch_size:
            yield pending.pop(tuple(image.shape))
        elif sum(map(len, pending.values())) >= MAX_PENDING * batch_size:
            yield pending.pop(max(pending, key=lambda k: len(pending[k])))
    yield from pending.values()


# ---------------------------------------------------------------------- the job


def _layout(out: Path, directions: tuple[str, ...]) -> dict[str, Path]:
    return {d: out / d if len(directions) > 1 else out for d in directions}


def translate_files(translator: Translator, files: list[Path], out: Path, opts: Options,
                    device: torch.device) -> Result:
    """Translate `files` into `out`; returns what was written and what failed."""
    names = output_names(files, opts.png)
    folders = _layout(out, opts.directions)
    inputs = {f.resolve() for f in files}
    clash = [f for f in files for d in opts.directions
             if (folders[d] / names[f]).resolve() in inputs]
    if clash:
        raise LoadError(f"{clash[0]}: the output would overwrite this input; choose another "
                        "--output folder")
    result = Result()
    start = time.perf_counter()
    with ThreadPoolExecutor(opts.workers) as readers, ThreadPoolExecutor(opts.workers) as writers:
        writes: list[Future] = []

        def decoded() -> Iterator[tuple[Path, Tensor]]:
            for path, future in prefetch(lambda p: load_input(p, opts.size), files, readers,
                                         depth=2 * opts.batch_size):
                try:
                    yield path, future.result()
                except BadImageError as e:
                    result.failed.append((path, e.reason or str(e)))

        for batch in shape_batches(decoded(), opts.batch_size, opts.tile):
            x = torch.stack([image for _, image in batch]).to(device)
            for d in opts.directions:
                y = tiling.run(translator.nets[d], x, tile=opts.tile, overlap=opts.overlap,
                               batch_size=opts.batch_size).cpu()
                for (path, image), translated in zip(batch, y, strict=True):
                    target = folders[d] / names[path]
                    result.outputs.setdefault(path, {})[d] = target
                    writes.append(writers.submit(_write_outputs, image, translated, target,
                                                 out, d, opts.side_by_side))
            for path, image in batch:
                writes.append(writers.submit(save_thumb, to_uint8(image),
                                             out / "thumbs" / "input" / f"{names[path]}.jpg"))
            writes = [w for w in writes if not _done(w)]
            while len(writes) > MAX_PENDING * opts.batch_size * (len(opts.directions) + 1):
                writes.pop(0).result()  # the writers are behind: wait for them
        for w in writes:
            w.result()
    result.seconds = time.perf_counter() - start
    write_contact_sheet(out, files, names, result, opts.directions)
    return result


def _done(future: Future) -> bool:
    if future.done():
        future.result()  # re-raise a failed write here
        return True
    return False


def _write_outputs(image: Tensor, translated: Tensor, target: Path, out: Path, direction: str,
                   side_by_side: bool) -> None:
    array = to_uint8(translated)
    save_image(array, target)
    save_thumb(array, out / "thumbs" / direction / f"{target.name}.jpg")
    if side_by_side:
        pair = np.concatenate([to_uint8(image), array], axis=1)
        save_image(pair, target.parent / "side_by_side" / target.name)


# ---------------------------------------------------------------------- contact sheet


def write_contact_sheet(out: Path, files: list[Path], names: dict[Path, str], result: Result,
                        directions: tuple[str, ...]) -> Path:
    """`out/index.html`: one row per input, its thumbnail and each translation's, linked."""

    def cell(thumb: str, href: str) -> str:
        return (f'<td><a href="{html.escape(href)}"><img src="{quote(thumb)}" '
                'loading="lazy"></a></td>')

    rows = []
    for f in files:
        name = names[f]
        if f not in result.outputs:
            rows.append(f"<tr><th>{html.escape(f.name)}</th><td colspan="
                        f'"{len(directions) + 1}">not translated</td></tr>')
            continue
        cells = [cell(f"thumbs/input/{name}.jpg", f.resolve().as_uri())]
        cells += [cell(f"thumbs/{d}/{name}.jpg",
                       quote(result.outputs[f][d].relative_to(out).as_posix()))
                  for d in directions]
        rows.append(f"<tr><th>{html.escape(f.name)}</th>{''.join(cells)}</tr>")
    failed = "".join(f"<li>{html.escape(str(p))}: {html.escape(r)}</li>"
                     for p, r in result.failed)
    head = "".join(f"<th>{d}</th>" for d in ("input", *directions))
    page = (
        "<!doctype html>\n<meta charset=\"utf-8\"><title>liss translate</title>\n"
        "<style>body{font-family:sans-serif}td,th{padding:4px;vertical-align:top}"
        f"img{{max-width:{THUMB}px;max-height:{THUMB}px;min-width:96px}}</style>\n"
        f"<h1>{len(result.outputs)} images translated</h1>\n"
        + (f"<p>Not translated:</p><ul>{failed}</ul>\n" if failed else "")
        + f"<table>\n<tr><th></th>{head}</tr>\n" + "\n".join(rows) + "\n</table>\n")
    path = out / "index.html"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
