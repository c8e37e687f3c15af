"""NVIDIA DALI training stream: the sampler's samples, decoded and augmented by DALI.

A batch `external_source` reads each sample's file bytes and its crop box, output size and
flip (the geometry `data.preprocess` gives the image's size, read from its header, the box
and flip drawn from the sample key by `augment.train_params`, exactly as the torch backend
does); DALI decodes (nvJPEG with `device="mixed"` on a GPU, CPU decoders with
`device_id=None`) and does resize, crop and flip in one resampling pass per image:
`fn.resize` to the crop's size over a relative ROI of the crop box, ROI reversed in x for a
flip. That equals resize-then-crop (filters sample the whole image, not the ROI), so image
and depth map share their geometry by construction. Images: cubic, antialiased; depth:
linear, 16-bit precision. Output NHWC, handed over as a channels_last NCHW view of the copy
out of DALI's buffers.

Python runs only the source (file reads), in the trainer's thread; the decoding runs in
DALI's `num_threads`, so a parallel (multi-process) external source would only add IPC.
Validation does not come through here: it is decoded by the torch path for both backends
(see `pipeline.InputPipeline.eval_batches`).

A decode failure (a file broken after the start-up scan) invalidates a DALI pipeline. The
stream then decodes each file of the failed iteration on its own to find the culprit,
marks it bad (`skip`: substitute and record; `error`: raise BadImageError) and rebuilds the
pipeline at the failed step, so the stream goes on exactly where it was.
"""

from __future__ import annotations

import functools
import io
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from liss.data.augment import CropFlip, Preprocess, train_params
from liss.data.batch import Batch, DomainBatch
from liss.data.images import (
    BadImageError,
    Failures,
    depth_file,
    failure_reason,
    file_bytes,
    image_size,
    load_or_substitute,
)
from liss.data.sampler import StreamSampler

INSTALL_HINT = "pip install liss[dali] (NVIDIA DALI), or use data.backend=torch"
PREFETCH = 2  # iterations DALI prepares ahead of the one being consumed


class DaliUnavailableError(ImportError):
    """DALI is not installed or does not work here; the message says how to fix it."""


def _dali() -> SimpleNamespace:
    """The DALI modules, imported on first use so `liss` works without them."""
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.math as dmath
        import nvidia.dali.types as types
        from nvidia.dali.plugin.pytorch import feed_ndarray
    except ImportError as e:
        raise DaliUnavailableError(
            f"the dali backend needs NVIDIA DALI ({e}): {INSTALL_HINT}") from None
    return SimpleNamespace(Pipeline=dali.Pipeline, fn=fn, math=dmath, types=types,
                           feed_ndarray=feed_ndarray)


def device_id(train_device: str) -> int | None:
    """DALI's GPU (the current CUDA device) when training runs on CUDA, else None (CPU)."""
    use_cuda = train_device == "cuda" or (train_device == "auto" and torch.cuda.is_available())
    return torch.cuda.current_device() if use_cuda else None


@functools.cache
def unavailable_reason(device: int | None) -> str | None:
    """Why the dali backend cannot run here (not installed, or a smoke decode fails)."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 20, 30)).save(buf, format="PNG")
    try:
        reason = _decode_alone(_dali(), np.frombuffer(buf.getvalue(), dtype=np.uint8),
                               gray=False, device=device)
    except DaliUnavailableError as e:
        return str(e)
    except Exception as e:  # failing to build a pipeline at all means: not usable here
        reason = f"{type(e).__name__}: {_summary(e)}"
    return None if reason is None else f"NVIDIA DALI does not work here ({reason})"


def _decode(d: SimpleNamespace, encoded: Any, *, gray: bool, device: int | None) -> Any:
    """Images decode to 8-bit RGB, depth maps to 16-bit gray (8-bit maps scale exactly)."""
    t = d.types
    return d.fn.decoders.image(encoded, device="cpu" if device is None else "mixed",
                               output_type=t.GRAY if gray else t.RGB,
                               dtype=t.UINT16 if gray else t.UINT8)


def _augment(d: SimpleNamespace, decoded: Any, start: Any, end: Any, size: Any, *,
             gray: bool) -> Any:
    """Resize + crop + flip in one pass over the ROI, then the value range of the contract."""
    t = d.types
    x = d.fn.resize(decoded, size=size, roi_start=start, roi_end=end,
                    roi_relative=True, antialias=True, dtype=t.FLOAT,
                    interp_type=t.INTERP_LINEAR if gray else t.INTERP_CUBIC)
    if gray:
        return d.math.clamp(x * (1.0 / 65535.0), 0.0, 1.0)  # depth in [0, 1]
    return d.math.clamp(x * (2.0 / 255.0) - 1.0, -1.0, 1.0)  # image in [-1, 1]


def roi(params: CropFlip) -> tuple[np.ndarray, np.ndarray]:
    """The crop box of `params` as a relative (y, x) ROI of the image; x reversed to flip."""
    (h, w), (ch, cw) = params.geometry.resized, params.geometry.crop
    y0, y1 = params.y / h, (params.y + ch) / h
    x0, x1 = params.x / w, (params.x + cw) / w
    if params.flip:
        x0, x1 = x1, x0
    return np.array([y0, x0], dtype=np.float32), np.array([y1, x1], dtype=np.float32)


def _summary(error: Exception) -> str:
    """The informative line of a DALI error (what follows 'encountered:')."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "encountered:" in lines:
        return lines[lines.index("encountered:") + 1]
    return lines[-1] if lines else type(error).__name__


@dataclass(frozen=True)
class _Fed:
    """One iteration handed to DALI: its step, and the keys and file indices (after any
    substitution) that label its output."""

    step: int
    keys: dict[str, list[int]]
    indices: dict[str, list[int]]


@dataclass(frozen=True)
class _Encoded:
    """One sample's file bytes (its depth map's too, when needed) and the image's size."""

    image: np.ndarray
    depth: np.ndarray | None
    size: tuple[int, int]  # (h, w) as decoded, EXIF orientation applied


class TrainStream(Iterator[Batch]):
    """Endless local batches from `start_step` on, the torch backend's stream and contract."""

    def __init__(self, files: dict[str, list[Path]], sampler_at: Callable[[int], StreamSampler],
                 start_step: int, *, prep: Preprocess, flip: bool,
                 with_depth: bool, threads: int, device: int | None, skip_bad: bool,
                 record: Callable[[Failures], None]):
        self._d = _dali()
        self.files, self.sampler_at, self.record = files, sampler_at, record
        self.prep, self.flip = prep, flip
        self.with_depth, self.threads, self.device = with_depth, max(1, threads), device
        self.skip_bad = skip_bad
        self.known_bad: dict[str, set[int]] = {"A": set(), "B": set()}
        self._start(start_step)

    # ------------------------------------------------------------ feeding DALI

    def _start(self, step: int) -> None:
        """(Re)build the pipeline so that its next output is step `step`."""
        sampler = self.sampler_at(step)
        self.local_batch, self._next_step = sampler.local_batch, step
        self._refs = iter(sampler)
        self._inflight: deque[_Fed] = deque()
        self._pipe = self._build()

    def _build(self) -> Any:
        d, t = self._d, self._d.types
        # image bytes, ROI start, ROI end, output size, depth bytes
        per_domain = 5 if self.with_depth else 4
        pipe = d.Pipeline(batch_size=self.local_batch, num_threads=self.threads,
                          device_id=self.device, prefetch_queue_depth=PREFETCH)
        with pipe:
            feeds = d.fn.external_source(source=self._source, num_outputs=2 * per_domain,
                                         batch=True, ndim=[1] * 2 * per_domain,
                                         dtype=[t.UINT8, t.FLOAT, t.FLOAT, t.FLOAT,
                                                t.UINT8][:per_domain] * 2)
            outputs = []
            for first in (0, per_domain):
                image, start, end, size, *depth = feeds[first:first + per_domain]
                for encoded, gray in ((image, False), *((e, True) for e in depth)):
                    decoded = _decode(d, encoded, gray=gray, device=self.device)
                    outputs.append(_augment(d, decoded, start, end, size, gray=gray))
            pipe.set_outputs(*outputs)
        pipe.build()
        return pipe

    def _read(self, image: Path) -> _Encoded:
        """The bytes, and the size from the header (not looked up when the geometry does
        not depend on it: then a file that only DALI finds broken fails in DALI, as ever)."""
        data = file_bytes(image)
        size = (0, 0) if self.prep.size_free else image_size(image, data)
        depth = np.frombuffer(file_bytes(depth_file(image)), dtype=np.uint8) \
            if self.with_depth else None
        return _Encoded(np.frombuffer(data, dtype=np.uint8), depth, size)

    def _source(self) -> tuple[list[np.ndarray], ...]:
        """One iteration's inputs, in `_build`'s order; called by DALI in this thread."""
        refs = list(itertools.islice(self._refs, self.local_batch))
        fed = _Fed(self._next_step, {"A": [], "B": []}, {"A": [], "B": []})
        columns: list[list[np.ndarray]] = []
        for d in ("A", "B"):
            images, starts, ends, sizes, depths = [], [], [], [], []
            for ref in refs:
                index, key = (ref.index_A, ref.key_A) if d == "A" else (ref.index_B, ref.key_B)
                used, encoded, failures = load_or_substitute(
                    self.files[d], index, self._read, skip=self.skip_bad,
                    known_bad=self.known_bad[d])
                if failures:
                    self.record(failures)
                params = train_params(key, self.prep.geometry(*encoded.size), self.flip)
                start, end = roi(params)
                images.append(encoded.image)
                starts.append(start)
                ends.append(end)
                sizes.append(np.array(params.geometry.crop, dtype=np.float32))
                depths.append(encoded.depth)
                fed.keys[d].append(key)
                fed.indices[d].append(used)
            columns += [images, starts, ends, sizes] + ([depths] if self.with_depth else [])
        self._inflight.append(fed)
        self._next_step += 1
        return tuple(columns)

    # ------------------------------------------------------------ consuming

    def __next__(self) -> Batch:
        while True:
            try:
                outputs = self._pipe.run()
            except RuntimeError as e:  # a DALI operator failed: find the file, rebuild
                self._recover(e)
                continue
            return self._batch(outputs, self._inflight.popleft())

    def _batch(self, outputs: tuple, fed: _Fed) -> Batch:
        it = iter(outputs)
        domains = {}
        for d in ("A", "B"):
            image = self._to_torch(next(it))
            depth = self._to_torch(next(it)) if self.with_depth else None
            domains[d] = DomainBatch(image=image, depth=depth,
                                     key=torch.tensor(fed.keys[d], dtype=torch.long),
                                     index=torch.tensor(fed.indices[d], dtype=torch.long))
        return Batch(**domains)

    def _to_torch(self, outputs: Any) -> Tensor:
        """[N,C,H,W] channels_last view of one NHWC copy out of DALI's (recycled) buffers."""
        dense = outputs.as_tensor()  # a view: a batch has one crop shape (pipeline checks)
        on_gpu = self.device is not None
        out = torch.empty(dense.shape(), dtype=torch.float32,
                          device=torch.device("cuda", self.device) if on_gpu else "cpu")
        self._d.feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(self.device)
                             if on_gpu else None)
        return out.permute(0, 3, 1, 2)

    # ------------------------------------------------------------ recovering

    def _recover(self, error: RuntimeError) -> None:
        """Find the file that broke the failed iteration, mark it bad, replay from there."""
        failed = self._inflight[0]
        for fed in self._inflight:  # the failed iteration first, then the ones after it
            found = self._find_bad(fed)
            if found:
                break
        else:
            raise RuntimeError(f"DALI failed at step {failed.step}, yet every file of the "
                               f"iterations in flight decodes on its own: {_summary(error)}"
                               ) from error
        for d, index, image, reason in found:
            if not self.skip_bad:
                raise BadImageError(image, reason) from None
            self.known_bad[d].add(index)
            self.record([(image, reason)])
        self._start(failed.step)

    def _find_bad(self, fed: _Fed) -> list[tuple[str, int, Path, str]]:
        out = []
        for d in ("A", "B"):
            for index in dict.fromkeys(fed.indices[d]):
                image = self.files[d][index]
                reason = self._probe(image)
                if reason is not None:
                    out.append((d, index, image, reason))
        return out

    def _probe(self, image: Path) -> str | None:
        """Why DALI cannot decode `image` (or its depth map) on its own, or None."""
        try:
            encoded = self._read(image)
        except BadImageError as e:
            return failure_reason(image, e)
        reason = _decode_alone(self._d, encoded.image, gray=False)
        if reason is not None:
            return f"DALI cannot decode it ({reason})"
        depth = encoded.depth
        reason = None if depth is None else _decode_alone(self._d, depth, gray=True)
        return None if reason is None else f"{depth_file(image)}: DALI cannot decode it ({reason})"


def _decode_alone(d: SimpleNamespace, encoded: np.ndarray, *, gray: bool,
                  device: int | None = None) -> str | None:
    """Decode one file in a throw-away pipeline: None, or why DALI cannot."""
    pipe = d.Pipeline(batch_size=1, num_threads=1, device_id=device, prefetch_queue_depth=1)
    with pipe:
        enc = d.fn.external_source(source=lambda: [encoded], batch=True, dtype=d.types.UINT8,
                                   ndim=1)
        pipe.set_outputs(_decode(d, enc, gray=gray, device=device))
    pipe.build()
    try:
        pipe.run()
    except RuntimeError as e:
        return _summary(e)
    return None
