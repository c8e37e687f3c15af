"""Built-in benchmark dataset: a procedural, unpaired "horse↔zebra" stand-in with depth.

Why: a real dataset is not always at hand (CI, quickstart, cluster smoke tests), and a paired
ground truth lets evaluation measure translation quality directly. Each image is a small 3-D
scene ray-cast with numpy: a pitched pinhole camera over a textured ground plane (y=0), a
gradient sky, 1–3 objects standing on the ground (spheres, ellipsoids, vertical capsules and
cylinders) with Lambertian + ambient light, cast shadows and light haze. Domain A objects wear a
plain coat, domain B objects the same kinds of shapes with stripes fixed in object coordinates
(so they wrap around the body). Ground and sky are drawn from the same distribution in both
domains: translation is a pure texture change.

Layout (CycleGAN): `{trainA,trainB,testA,testB}/<stem>.jpg` (RGB JPEG, quality 95) with
`depths/<stem>.png`, stems `00000`, `00001`, ...; `gt/testA2B/<stem>.png` is the testA scene
rendered with the B coat and `gt/testB2A/<stem>.png` the testB scene with the A coat, and
`gt/trainA2B`, `gt/trainB2A` the same for train scenes (RGB PNG,
identical geometry, light and colours). `gt/<folder>/masks/<stem>.png` (8-bit, 255 on every
pixel an object touches, 0 elsewhere) is the only region where the two coats differ: paired
metrics score background preservation outside it and the coat inside it. `.liss-synth.json`,
written last, marks a finished set; a set without masks (written by an earlier liss) is
incomplete and `generate` replaces it.

Depth encoding (8-bit grayscale PNG): z is the distance of the first hit along the camera's
optical axis (sky and ground beyond Z_FAR: z = Z_FAR), stored as
`x = round(255 * clip(Z_NEAR / z, 1/255, 1))`, i.e. inverse depth with the nearest visible ground
at about 1. The value is the mean of Z_NEAR / z over the 2×2 supersamples of a pixel, so object
silhouettes are anti-aliased like the image. The loader's `d = -ln(x / 255)` is then
`ln(z / Z_NEAR)`: about 0 at the bottom of the image and ln(40) ≈ 3.7 for the sky.

Every image has its own generator `np.random.default_rng([seed, split_id, domain_id, index])`,
so the first n images do not depend on how many were asked for.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from liss.data.layout import depth_path, list_images

Z_NEAR = 2.0  # about the ground distance at the bottom edge of the image
Z_FAR = 80.0  # sky plane: d = ln(Z_FAR / Z_NEAR) ≈ 3.7
SUPERSAMPLE = 2  # rays per pixel side (anti-aliasing of stripes and silhouettes)
JPEG_QUALITY = 95
MARKER = ".liss-synth.json"
SPLIT_IDS = {"train": 0, "test": 1}
DOMAIN_IDS = {"A": 0, "B": 1}
KINDS = ("sphere", "ellipsoid", "capsule", "cylinder")
_EPS = 1e-4
_HALF_FOV = np.radians(25.0)
_X, _Y = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
_SUBPIXELS = [((i + 0.5) / SUPERSAMPLE, (j + 0.5) / SUPERSAMPLE)
              for i in range(SUPERSAMPLE) for j in range(SUPERSAMPLE)]


@dataclass(frozen=True)
class Thing:
    """One object: a canonical shape (unit sphere, unit cylinder or capsule) placed in the world.

    `to_local` maps world points to canonical coordinates, in which the stripes are defined.
    """

    kind: str
    center: np.ndarray  # world position of the canonical origin
    scale: np.ndarray  # world size of one canonical unit along local x, y, z
    yaw: float
    k: float  # capsule: half-length of the axis segment in radii; 0 otherwise
    coat: np.ndarray  # RGB albedo of the coat
    dark: np.ndarray  # RGB albedo of the stripes
    stripe_axis: np.ndarray  # unit vector, canonical coordinates
    wobble_axis: np.ndarray
    stripe_freq: float  # stripe pairs per canonical unit
    stripe_phase: float
    wobble: float

    @property
    def to_local(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]]) / self.scale[:, None]

    @property
    def extent(self) -> np.ndarray:
        """Half-extent in canonical units, to normalise stripe coordinates."""
        return np.array([1.0, 1.0 + self.k, 1.0])


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image, in either coat."""

    cam_height: float
    pitch: float  # radians below the horizontal
    light: np.ndarray  # unit vector towards the sun
    sun: np.ndarray  # RGB
    ambient: float
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    ground: tuple[np.ndarray, np.ndarray]  # two albedos mixed by the texture
    waves: np.ndarray  # (n, 3): frequency x, frequency z, phase of the ground texture
    haze: float  # distance at which haze reaches 1 - 1/e
    things: tuple[Thing, ...]


# ----------------------------------------------------------------------------- scene sampling


def scene_for(seed: int, split: str, domain: str, index: int) -> Scene:
    """The scene of image `index` of `split`+`domain` (independent of the dataset size)."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], DOMAIN_IDS[domain], index])
    return sample_scene(rng)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw camera, light, sky, ground and 1–3 non-overlapping objects."""
    elev, azim = rng.uniform(np.radians(25), np.radians(65)), rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)])
    zenith = np.clip(np.array([0.25, 0.45, 0.85]) + rng.normal(0, 0.06, 3), 0, 1)
    horizon = np.clip(np.array([0.78, 0.85, 0.92]) + rng.normal(0, 0.05, 3), 0, 1)
    base = np.array([0.35, 0.5, 0.2]) + rng.normal(0, 0.08, 3)
    ground = (np.clip(base, 0.05, 1), np.clip(base * rng.uniform(0.55, 0.8) + [0.12, 0.06, 0.0],
                                              0.05, 1))
    waves = np.column_stack([rng.normal(0, 1.2, (4, 2)), rng.uniform(0, 2 * np.pi, 4)])
    return Scene(
        cam_height=rng.uniform(1.3, 1.9), pitch=rng.uniform(np.radians(4), np.radians(18)),
        light=light, sun=np.array([1.0, 0.96, 0.88]) * rng.uniform(0.95, 1.1),
        ambient=rng.uniform(0.3, 0.45), sky_horizon=horizon, sky_zenith=zenith,
        ground=ground, waves=waves, haze=rng.uniform(35, 70), things=_sample_things(rng))


def _sample_things(rng: np.random.Generator) -> tuple[Thing, ...]:
    """1–3 objects at distinct ground positions, rejecting overlapping footprints."""
    things: list[Thing] = []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(20):
            thing = _sample_thing(rng)
            if all(_apart(thing, other) for other in things):
                things.append(thing)
                break
    return tuple(things)


def _apart(a: Thing, b: Thing) -> bool:
    dist = np.hypot(*(a.center - b.center)[[0, 2]])
    return bool(dist > max(a.scale[0], a.scale[2]) + max(b.scale[0], b.scale[2]) + 0.2)


def _sample_thing(rng: np.random.Generator) -> Thing:
    kind = KINDS[int(rng.integers(len(KINDS)))]
    scale, k, axis = _sample_shape(rng, kind)
    z = rng.uniform(3.2, 11.0)
    x = rng.uniform(-1, 1) * max(z * np.tan(_HALF_FOV) - scale[0], 0.0)
    y = scale[1] * (1 + k)  # rests on the ground
    tilt = rng.normal(0, 0.25, 3)
    stripe_axis = (axis + tilt) / np.linalg.norm(axis + tilt)
    wobble_axis = np.cross(stripe_axis, rng.normal(0, 1, 3))
    coat = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.25, 0.75), rng.uniform(0.5, 0.95))
    return Thing(
        kind=kind, center=np.array([x, y, z]), scale=scale, yaw=rng.uniform(0, np.pi), k=k,
        coat=coat, dark=np.full(3, rng.uniform(0.03, 0.1)), stripe_axis=stripe_axis,
        wobble_axis=wobble_axis / np.linalg.norm(wobble_axis),
        stripe_freq=rng.uniform(1.6, 2.6), stripe_phase=rng.uniform(0, 1),
        wobble=rng.uniform(0.03, 0.15))


def _sample_shape(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, float, np.ndarray]:
    """(scale, capsule k, long axis): stripes run across the long axis like a zebra's."""
    if kind == "sphere":
        return np.full(3, rng.uniform(0.4, 0.9)), 0.0, rng.normal(0, 1, 3)
    if kind == "ellipsoid":
        ry = rng.uniform(0.4, 0.75)
        return np.array([rng.uniform(0.9, 1.4), ry, ry * rng.uniform(0.8, 1.1)]), 0.0, _X
    if kind == "capsule":
        r = rng.uniform(0.25, 0.5)
        return np.full(3, r), rng.uniform(0.6, 2.5), _Y
    return np.array([1, rng.uniform(0.8, 2.5), 1]) * rng.uniform(0.3, 0.6), 0.0, _Y


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + 6 * h) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


# ----------------------------------------------------------------------------- ray casting


def _first_root(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Smaller root of a·t² + 2b·t + c = 0 when it lies in front of the origin, else inf."""
    disc = b * b - a * c
    t = (-b - np.sqrt(disc)) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def _hit_sphere(o: np.ndarray, d: np.ndarray, cy: float = 0.0) -> np.ndarray:
    """Unit sphere centred at (0, cy, 0)."""
    o = o - cy * _Y[:, None]
    return _first_root((d * d).sum(0), (o * d).sum(0), (o * o).sum(0) - 1)


def _hit_side(o: np.ndarray, d: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Side of the unit vertical cylinder between heights lo and hi."""
    t = _first_root(d[0] ** 2 + d[2] ** 2, o[0] * d[0] + o[2] * d[2], o[0] ** 2 + o[2] ** 2 - 1)
    y = o[1] + t * d[1]
    return np.where((y >= lo) & (y <= hi), t, np.inf)


def _hit_cap(o: np.ndarray, d: np.ndarray, y0: float) -> np.ndarray:
    """Unit disc at height y0."""
    t = (y0 - o[1]) / d[1]
    x, z = o[0] + t * d[0], o[2] + t * d[2]
    return np.where((t > _EPS) & (x * x + z * z <= 1), t, np.inf)


def _hit_thing(thing: Thing, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit (inf on a miss); t is the same in canonical space."""
    m = thing.to_local
    o, d = m @ (o - thing.center[:, None]), m @ d
    if thing.kind == "capsule":
        k = thing.k
        return np.minimum.reduce([_hit_side(o, d, -k, k), _hit_sphere(o, d, k),
                                  _hit_sphere(o, d, -k)])
    if thing.kind == "cylinder":
        return np.minimum.reduce([_hit_side(o, d, -1, 1), _hit_cap(o, d, 1), _hit_cap(o, d, -1)])
    return _hit_sphere(o, d)


def _canonical_normal(thing: Thing, q: np.ndarray) -> np.ndarray:
    """Outward (unnormalised) normal at canonical surface points q."""
    if thing.kind == "capsule":
        return q - np.clip(q[1], -thing.k, thing.k) * _Y[:, None]
    if thing.kind == "cylinder":
        cap = 1 - np.abs(q[1]) < 1 - np.hypot(q[0], q[2])
        return np.where(cap, np.sign(q[1]) * _Y[:, None], q * np.array([[1.0], [0.0], [1.0]]))
    return q


def _camera_rays(scene: Scene, size: int,
                 offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3, 1) and directions (3, size²), one ray per pixel at `offset` (row, column)
    inside it, row-major from the top-left pixel.

    Directions have unit component along the optical axis, so the ray parameter t is z.
    """
    rows, cols = (((np.arange(size) + o) / size * 2 - 1) * np.tan(_HALF_FOV) for o in offset)
    u, v = (a.ravel() for a in np.meshgrid(cols, -rows))
    sp, cp = np.sin(scene.pitch), np.cos(scene.pitch)
    return np.array([[0.0], [scene.cam_height], [0.0]]), np.stack([u, v * cp - sp, cp + v * sp])


def _sky(scene: Scene, d: np.ndarray) -> np.ndarray:
    elevation = d[1] / np.linalg.norm(d, axis=0)
    w = np.clip(elevation / 0.45, 0, 1) ** 0.7
    return scene.sky_horizon[:, None] + (scene.sky_zenith - scene.sky_horizon)[:, None] * w


def _ground_albedo(scene: Scene, p: np.ndarray) -> np.ndarray:
    fx, fz, phase = scene.waves.T.astype(np.float32)  # float32 sin is several times faster
    x, z = p[0].astype(np.float32), p[2].astype(np.float32)
    tex = np.sin(fx[:, None] * x + fz[:, None] * z + phase[:, None]).mean(0)
    m = np.clip(0.5 + 0.9 * tex, 0, 1)
    g0, g1 = scene.ground
    return g0[:, None] * (1 - m) + g1[:, None] * m


def _coat_albedo(thing: Thing, q: np.ndarray, coat: str) -> np.ndarray:
    """Plain coat for A; for B, zebra stripes: planes across the object's long axis, wobbled."""
    if coat == "A":
        return np.repeat(thing.coat[:, None], q.shape[1], axis=1)
    qn = q / thing.extent[:, None]
    u = (thing.stripe_freq * (thing.stripe_axis @ qn) + thing.stripe_phase
         + thing.wobble * np.sin(2 * np.pi * (thing.wobble_axis @ qn)))
    return np.where(u % 1 < 0.5, thing.dark[:, None], thing.coat[:, None])


def _bounding_radius(thing: Thing) -> float:
    return float(np.linalg.norm(thing.scale * thing.extent))


def _sunlit(scene: Scene, p: np.ndarray) -> np.ndarray:
    """1 where the sun is visible from points p, 0 in shadow (objects cast, ground does not).

    Only points whose sun ray passes an object's bounding sphere get the exact test.
    """
    blocked = np.zeros(p.shape[1], dtype=bool)
    for thing in scene.things:
        w = thing.center[:, None] - p
        along = scene.light @ w
        r = _bounding_radius(thing)
        near = np.flatnonzero((along > -r) & ((w * w).sum(0) - along**2 < r * r))
        hits = np.isfinite(_hit_thing(thing, p.take(near, axis=1), scene.light[:, None]))
        blocked[near[hits]] = True
    return (~blocked).astype(np.float32)


def _screen_box(scene: Scene, thing: Thing, n: int) -> tuple[slice, slice]:
    """Pixel rows and columns (of n×n) that can see `thing` (its bounding cube projected)."""
    r = _bounding_radius(thing)
    corners = thing.center + r * np.array(np.meshgrid(*[[-1, 1]] * 3)).reshape(3, -1).T
    rel = corners - [0.0, scene.cam_height, 0.0]
    sp, cp = np.sin(scene.pitch), np.cos(scene.pitch)
    z = rel @ [0.0, -sp, cp]
    if np.any(z <= 0):
        return slice(0, n), slice(0, n)
    scale = n / (2 * np.tan(_HALF_FOV))
    cols = rel[:, 0] / z * scale + n / 2
    rows = n / 2 - (rel @ [0.0, cp, sp]) / z * scale
    box = [np.clip([np.floor(a.min()), np.ceil(a.max()) + 1], 0, n).astype(int)
           for a in (rows, cols)]
    return slice(*box[0]), slice(*box[1])


def _primary_hits(scene: Scene, origin: np.ndarray, d: np.ndarray, n: int) -> np.ndarray:
    """(1 + objects, P) ray parameters: the ground, then each object within its screen box."""
    ts = np.full((1 + len(scene.things), n, n), np.inf, dtype=d.dtype)
    ts[0] = np.where(d[1] < 0, -scene.cam_height / d[1], np.inf).reshape(n, n)
    grid = d.reshape(3, n, n)
    for i, thing in enumerate(scene.things, start=1):
        rows, cols = _screen_box(scene, thing, n)
        sub = grid[:, rows, cols]
        ts[i, rows, cols] = _hit_thing(thing, origin, sub.reshape(3, -1)).reshape(sub.shape[1:])
    return ts.reshape(len(ts), -1)


def _surfaces(scene: Scene, coat: str, p: np.ndarray,
              which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and unit normal (3, H) at the hit points p (3, H); `which` 0 = ground."""
    albedo, normal = np.empty_like(p), np.zeros_like(p)
    normal[1] = 1.0
    ground = np.flatnonzero(which == 0)
    albedo[:, ground] = _ground_albedo(scene, p.take(ground, axis=1))
    for i, thing in enumerate(scene.things, start=1):
        sel = np.flatnonzero(which == i)
        q = thing.to_local @ (p.take(sel, axis=1) - thing.center[:, None])
        nrm = thing.to_local.T @ _canonical_normal(thing, q)
        normal[:, sel] = nrm / np.linalg.norm(nrm, axis=0)
        albedo[:, sel] = _coat_albedo(thing, q, coat)
    return albedo, normal


def _trace(scene: Scene, coat: str, size: int,
           offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ray per pixel: colour (3, P), inverse depth Z_NEAR/z (P,) and object index (P,)."""
    origin, d = _camera_rays(scene, size, offset)
    ts = _primary_hits(scene, origin, d, size)
    which = ts.argmin(0)
    t = np.take_along_axis(ts, which[None], 0)[0]
    hit = np.flatnonzero(np.isfinite(t))
    th = t[hit]
    p = origin + th * d.take(hit, axis=1)
    albedo, normal = _surfaces(scene, coat, p, which[hit])
    lambert = np.clip(scene.light @ normal, 0, None) * _sunlit(scene, p + 1e-3 * normal)
    lit = albedo * (scene.ambient + (1 - scene.ambient) * lambert) * scene.sun[:, None]
    haze = np.exp(-th / scene.haze)
    colour = np.empty_like(d)
    colour[:, hit] = lit * haze + scene.sky_horizon[:, None] * (1 - haze)
    sky = np.flatnonzero(~np.isfinite(t))
    colour[:, sky] = _sky(scene, d.take(sky, axis=1))
    inv = np.clip(Z_NEAR / np.minimum(t, Z_FAR), 1 / 255, 1)
    return colour, inv, which


def render_scene(scene: Scene, coat: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render `scene` with coat "A" (plain) or "B" (striped).

    Returns RGB uint8 (size, size, 3), encoded depth uint8 (size, size) and a boolean mask of
    pixels touched by an object (only those can differ between the two coats).
    """
    if coat not in DOMAIN_IDS:
        raise ValueError(f"coat must be 'A' or 'B', got {coat!r}")
    colour, inv = np.zeros((3, size * size)), np.zeros(size * size)
    mask = np.zeros(size * size, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for offset in _SUBPIXELS:  # one pass per sub-pixel keeps arrays small (less paging)
            c, i, which = _trace(scene, coat, size, offset)
            colour, inv, mask = colour + c, inv + i, mask | (which > 0)
    rgb = np.round(255 * np.clip(colour / len(_SUBPIXELS), 0, 1)).astype(np.uint8)
    depth = np.round(255 * inv / len(_SUBPIXELS)).astype(np.uint8)
    shape = (size, size)
    return rgb.reshape(3, *shape).transpose(1, 2, 0), depth.reshape(shape), mask.reshape(shape)


# ----------------------------------------------------------------------------- dataset files


@dataclass(frozen=True)
class SynthSummary:
    """What `generate` wrote, for the CLI to print."""

    out: Path
    counts: dict[str, int]
    size: int
    seed: int
    seconds: float

    def __str__(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in self.counts.items())
        return (f"synthetic dataset written to {self.out}\n"
                f"  {counts}; {self.size}x{self.size} px, seed {self.seed}, "
                f"{self.seconds:.1f} s")


def generate(out: Path, *, n_train: int = 200, n_test: int = 50, size: int = 128,
             seed: int = 0) -> SynthSummary:
    """Write the dataset to `out`, building it in a hidden sibling folder renamed at the end.

    An existing complete synthetic dataset at `out` is replaced; any other non-empty `out`
    raises FileExistsError rather than mixing files.
    """
    _validate(n_train, n_test, size, seed)
    out = Path(out).resolve()
    _check_target(out)
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        counts = _write_dataset(tmp, n_train=n_train, n_test=n_test, size=size, seed=seed)
        params = {"n_train": n_train, "n_test": n_test, "size": size, "seed": seed}
        (tmp / MARKER).write_text(json.dumps({"params": params, "counts": counts}, indent=1))
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthSummary(out, counts, size, seed, time.perf_counter() - start)


def _validate(n_train: int, n_test: int, size: int, seed: int) -> None:
    if n_train < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train}")
    if n_test < 0:
        raise ValueError(f"n_test must be >= 0, got {n_test}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise FileExistsError(
            f"{out} is not empty and holds no synthetic dataset written by liss; "
            "remove it or choose another folder")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; an old complete dataset there is swapped out, then deleted."""
    tmp.chmod(0o755)  # mkdtemp makes it 0700: unreadable by other users, containers, volumes
    if not out.exists():
        tmp.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(old / "dataset")
    tmp.rename(out)
    shutil.rmtree(old)


def _write_dataset(root: Path, *, n_train: int, n_test: int, size: int,
                   seed: int) -> dict[str, int]:
    """Render every image (threads: numpy releases the GIL); returns file counts per folder."""
    counts = _folder_counts(n_train, n_test)
    for folder in counts:
        (root / folder).mkdir(parents=True)
        (root / folder / ("masks" if folder.startswith("gt/") else "depths")).mkdir()
    jobs = [(split, d, i) for split, n in (("train", n_train), ("test", n_test))
            for d in DOMAIN_IDS for i in range(n)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        # map re-raises the first error and cancels the jobs not yet started
        list(pool.map(lambda job: _write_image(root, *job, size=size, seed=seed), jobs))
    return counts


def _folder_counts(n_train: int, n_test: int) -> dict[str, int]:
    """Files per folder: the four splits, then the two ground-truth folders."""
    counts = {f"{split}{d}": n for split, n in (("train", n_train), ("test", n_test))
              for d in DOMAIN_IDS}
    return counts | {f"gt/{split}{d}2{_other(d)}": n
                     for split, n in (("train", n_train), ("test", n_test)) for d in DOMAIN_IDS}


def _other(domain: str) -> str:
    return "B" if domain == "A" else "A"


def _write_image(root: Path, split: str, domain: str, index: int, *, size: int,
                 seed: int) -> None:
    """The image, its depth map, the other-coat ground truth and the object mask (train
    scenes too, so a validation split carved from train can be scored during training)."""
    scene = scene_for(seed, split, domain, index)
    folder, stem = root / f"{split}{domain}", f"{index:05d}"
    rgb, depth, mask = render_scene(scene, domain, size)
    Image.fromarray(rgb).save(folder / f"{stem}.jpg", quality=JPEG_QUALITY)
    Image.fromarray(depth).save(folder / "depths" / f"{stem}.png")
    other = _other(domain)
    gt = root / "gt" / f"{split}{domain}2{other}"
    Image.fromarray(render_scene(scene, other, size)[0]).save(gt / f"{stem}.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(gt / "masks" / f"{stem}.png")


def is_complete(out: Path) -> bool:
    """True when `out` holds a finished dataset: marker present and matching the files."""
    try:
        counts = json.loads((Path(out) / MARKER).read_text())["counts"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(counts, dict) or set(counts) != set(_folder_counts(1, 1)):
        return False
    return all(_folder_complete(Path(out), name, n) for name, n in counts.items())


def _folder_complete(root: Path, name: str, n: int) -> bool:
    folder = root / name
    if not folder.is_dir():
        return False
    if name.startswith("gt/"):
        return len(list(folder.glob("*.png"))) == n == len(list(folder.glob("masks/*.png")))
    images = list_images(folder)
    return len(images) == n and all(depth_path(p).is_file() for p in images)
