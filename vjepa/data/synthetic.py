"""Synthetic motion corpora generated at run time: the demo's corpus and a second check corpus.

Two styles, each a small set of classes defined by MOTION only (every appearance factor is
drawn from one distribution for all classes, so a single frame carries no class):

- ``pan`` (the demo corpus): a camera pans or zooms over a large, non-periodic grey texture
  (smooth noise at several scales plus a few textured shapes). Classes ``down``, ``expand``,
  ``left``, ``right``, ``shrink``, ``up`` (the direction the content moves in the image). The
  texture does not tile, so a visible patch says nothing about a hidden patch of the same frame
  beyond its neighbourhood: a target can only be predicted from the past if the motion is known.
- ``objects`` (the second corpus, used for nothing but the final check): a small coloured,
  textured object moves over a static, coloured, textured background beside a static distractor
  shape; 8 classes ``bounce`` (back and forth), ``down``, ``expand`` (the object grows),
  ``left``, ``orbit`` (circles), ``right``, ``still``, ``up``. Other shapes, colours and
  backgrounds than ``pan``, drawn from another seed.

Every clip has its own generator ``numpy.random.default_rng([seed, style, split, index])``, so a
clip never changes when others are added. :func:`write_split` writes mp4 files and a list file
in the original V-JEPA list format (``relative/path.mp4 <label>``) in a seeded random order, so
no list is sorted by class.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vjepa.data.encode import encode_frames

STYLES: dict[str, tuple[str, ...]] = {
    "pan": ("down", "expand", "left", "right", "shrink", "up"),
    "objects": ("bounce", "down", "expand", "left", "orbit", "right", "still", "up"),
}
"""Class names per style; the label of a class is its index (the tuples are sorted)."""

_DIRS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


def clip_rng(seed: int, style: str, split: str, index: int) -> np.random.Generator:
    """The generator of clip ``index`` of ``split`` (one stream per clip)."""
    return np.random.default_rng(
        [seed, zlib.crc32(style.encode()), zlib.crc32(split.encode()), index]
    )


def _smooth(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random grid in [0, 1], ``[h, w]`` (no periodicity)."""
    gh, gw = max(2, h * cells // max(h, w)) + 1, max(2, w * cells // max(h, w)) + 1
    grid = rng.random((gh, gw))
    ys = np.linspace(0, gh - 1.001, h)
    xs = np.linspace(0, gw - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    out = top * (1 - fy) + bot * fy
    return (out - out.min()) / max(out.max() - out.min(), 1e-6)


def _shape_alpha(kind: int, u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
    """Soft (one pixel) alpha of a unit shape at normalised coords; ``px`` = pixels per unit."""
    if kind == 0:  # square
        d = np.maximum(np.abs(u), np.abs(v))
    elif kind == 1:  # disc
        d = np.sqrt(u**2 + v**2)
    elif kind == 2:  # diamond
        d = (np.abs(u) + np.abs(v)) / 1.2
    else:  # cross
        d = np.minimum(
            np.maximum(np.abs(u) * 2.5, np.abs(v)), np.maximum(np.abs(u), np.abs(v) * 2.5)
        )
    return np.clip((1.0 - d) * px + 0.5, 0.0, 1.0)


def _pattern(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A texture in [0, 1] at normalised coords: stripes, checkers or rings."""
    kind = int(rng.integers(3))
    if kind == 0:
        a, f = rng.uniform(0, np.pi), rng.uniform(1.5, 3.5)
        return 0.5 + 0.5 * np.sin(np.pi * f * (u * np.cos(a) + v * np.sin(a)))
    if kind == 1:
        k = rng.uniform(1.5, 3.0)
        return ((np.floor((u + 1) * k) + np.floor((v + 1) * k)) % 2).astype(float)
    return 0.5 + 0.5 * np.cos(np.pi * rng.uniform(2.0, 4.0) * np.sqrt(u**2 + v**2))


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample ``img`` [H, W] at float pixel coordinates (clamped to the border)."""
    h, w = img.shape
    x = np.clip(x - 0.5, 0, w - 1.001)
    y = np.clip(y - 0.5, 0, h - 1.001)
    x0, y0 = x.astype(int), y.astype(int)
    fx, fy = x - x0, y - y0
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bot = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


PAN_TONES = (25.0, 230.0)
"""The two grey levels of the pan style (grey on purpose: see data/README.md, "Why grey")."""


def render_pan(cls: str, rng: np.random.Generator, size: int = 64, frames: int = 32) -> np.ndarray:
    """One clip of the ``pan`` style, uint8 ``[T, H, W, 3]``."""
    if cls not in STYLES["pan"]:
        raise ValueError(f"unknown pan class {cls!r}; expected one of {STYLES['pan']}")
    s = size / 64.0
    speed = rng.uniform(1.5, 3.0) * s  # px per frame
    z_small, z_large = rng.uniform(0.55, 0.7), rng.uniform(1.4, 1.7)
    z_fixed = rng.uniform(z_small, z_large)
    # The canvas holds the whole camera path at the widest view, so nothing wraps or tiles.
    side = int(size / z_small + speed * frames / z_small + 8)
    canvas = sum(
        w * _smooth(rng, side, side, c) for w, c in ((0.5, 4), (0.3, 10), (0.2, 22))
    )  # [S, S]
    canvas = (canvas - canvas.min()) / max(np.ptp(canvas), 1e-6)
    # Textured shapes stuck to the canvas, about one per 40x40 px: trackable structure everywhere.
    for _ in range(side * side // 1600):
        cx, cy, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(4, 9) * s
        x0, x1 = max(0, int(cx - 1.5 * r)), min(side, int(cx + 1.5 * r) + 2)
        y0, y1 = max(0, int(cy - 1.5 * r)), min(side, int(cy + 1.5 * r) + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5  # the shape's box only
        u, v = (xx - cx) / r, (yy - cy) / r
        a = _shape_alpha(int(rng.integers(4)), u, v, r)
        patch = canvas[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = patch * (1 - a) + _pattern(rng, u, v) * a
    t = np.arange(frames, dtype=float)[:, None, None]  # [T, 1, 1]
    ys, xs = (np.mgrid[0:size, 0:size] + 0.5 - size / 2)[:, None]  # [1, H, W] each, centred
    if cls in _DIRS:
        dx, dy = _DIRS[cls]
        zoom = np.full_like(t, z_fixed)
        travel = speed * (frames - 1) / z_fixed  # canvas px
        # content moving by +v in the image = the camera moving by -v over the canvas
        half = size / 2 / z_fixed
        lo, hi = half + 1, side - half - 1
        start = np.array(
            [
                rng.uniform(lo + max(0, dx) * travel, hi - max(0, -dx) * travel),
                rng.uniform(lo + max(0, dy) * travel, hi - max(0, -dy) * travel),
            ]
        )
        cx = start[0] - dx * speed * t / z_fixed
        cy = start[1] - dy * speed * t / z_fixed
    else:
        frac = t / max(frames - 1, 1)
        if cls == "shrink":
            frac = 1.0 - frac
        zoom = z_small + (z_large - z_small) * frac  # [T, 1, 1]
        half = size / 2 / z_small
        cx = np.full_like(t, rng.uniform(half + 1, side - half - 1))
        cy = np.full_like(t, rng.uniform(half + 1, side - half - 1))
        rng.uniform(size=2)  # keep the draw count equal to the translation classes'
    img = _bilinear(canvas, cx + xs / zoom, cy + ys / zoom)  # [T, H, W]
    lo, hi = PAN_TONES
    grey = lo + (hi - lo) * img
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None].repeat(3, axis=-1)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated random RGB colour in [0, 255]."""
    hue = rng.uniform(0, 1)
    k = (np.array([0.0, 2.0, 4.0]) + hue * 6.0) % 6.0
    rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)  # hsv -> rgb at s = v = 1
    return 255.0 * (0.25 + 0.75 * rgb * rng.uniform(0.7, 1.0))


def _object_path(cls: str, rng: np.random.Generator, t: np.ndarray, size: int) -> tuple:
    """Centre (x, y) [T] and radius scale [T] of the moving object of ``objects`` class ``cls``."""
    s = size / 64.0
    speed = rng.uniform(1.0, 2.0) * s
    x0, y0 = rng.uniform(0, size, size=2)
    amp, period = rng.uniform(8, 12) * s, rng.uniform(8, 12)
    phase = rng.uniform(0, 2 * np.pi)
    spin = rng.choice([-1.0, 1.0])
    grow = np.ones_like(t)
    if cls in _DIRS:
        dx, dy = _DIRS[cls]
        x, y = x0 + dx * speed * t, y0 + dy * speed * t
    elif cls == "still":
        x, y = x0 + 0 * t, y0 + 0 * t
    elif cls == "bounce":  # back and forth along a random axis, a triangle wave
        a = rng.uniform(0, np.pi)
        tri = 2 * np.abs(((t / period + phase / (2 * np.pi)) % 1.0) - 0.5) * 2 - 1  # [-1, 1]
        x, y = x0 + amp * tri * np.cos(a), y0 + amp * tri * np.sin(a)
    elif cls == "orbit":
        ang = phase + spin * 2 * np.pi * t / (1.5 * period)
        x, y = x0 + 0.8 * amp * np.cos(ang), y0 + 0.8 * amp * np.sin(ang)
    elif cls == "expand":
        x, y = x0 + 0 * t, y0 + 0 * t
        grow = 0.6 + 1.2 * t / max(t[-1], 1)
    else:
        raise ValueError(f"unknown objects class {cls!r}; expected one of {STYLES['objects']}")
    return x, y, grow


def render_objects(
    cls: str, rng: np.random.Generator, size: int = 64, frames: int = 32
) -> np.ndarray:
    """One clip of the ``objects`` style, uint8 ``[T, H, W, 3]``."""
    return render_objects_with_path(cls, rng, size, frames)[0]


def render_objects_with_path(
    cls: str, rng: np.random.Generator, size: int = 64, frames: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """One ``objects`` clip, uint8 ``[T, H, W, 3]``, and the moving object's centre ``[T, 2]``.

    The centre is (x, y) in pixels, wrapped into ``[0, size)``: the scene is a torus (an object
    leaving one edge re-enters at the other), so compare positions with a wrap-aware distance.
    """
    if cls not in STYLES["objects"]:
        raise ValueError(f"unknown objects class {cls!r}; expected one of {STYLES['objects']}")
    s = size / 64.0
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # [H, W]
    c1, c2 = _colour(rng), _colour(rng)
    mix = 0.6 * _smooth(rng, size, size, 5) + 0.4 * _smooth(rng, size, size, 14)
    bg = c1 * mix[..., None] + c2 * (1 - mix[..., None])  # [H, W, 3] static background
    # the static distractor: a textured shape of its own colour
    dxc, dyc, dr = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(5, 8) * s
    u, v = (xx - dxc) / dr, (yy - dyc) / dr
    a = _shape_alpha(int(rng.integers(4)), u, v, dr)[..., None]
    dcol = _colour(rng)
    bg = bg * (1 - a) + (dcol * (0.5 + 0.5 * _pattern(rng, u, v))[..., None]) * a
    # the moving object (same distribution of looks for every class)
    ocol, shape, r = _colour(rng), int(rng.integers(4)), rng.uniform(4.5, 6.5) * s
    pat_seed = int(rng.integers(1 << 30))
    t = np.arange(frames, dtype=float)
    x, y, grow = _object_path(cls, rng, t, size)
    # torus: an object leaving one edge comes back at the other, so position says no class
    ox = (xx[None] - x[:, None, None] + size / 2) % size - size / 2  # [T, H, W]
    oy = (yy[None] - y[:, None, None] + size / 2) % size - size / 2
    rr = r * grow[:, None, None]
    u, v = ox / rr, oy / rr
    a = _shape_alpha(shape, u, v, rr)[..., None]  # [T, H, W, 1]
    tex = _pattern(np.random.default_rng(pat_seed), u, v)[..., None]
    obj = ocol * (0.45 + 0.55 * tex)
    out = bg[None] * (1 - a) + obj * a
    centre = np.stack([x % size, y % size], axis=-1)  # [T, 2]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), centre


RENDER = {"pan": render_pan, "objects": render_objects}


def split_clip(
    style: str,
    split: str,
    index: int,
    per_class: int,
    *,
    seed: int = 0,
    size: int = 64,
    frames: int = 32,
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Clip ``index`` of a split written by :func:`write_split` with ``per_class`` clips per
    class: its frames uint8 ``[T, H, W, 3]``, its label, and for ``objects`` the moving object's
    centre ``[T, 2]`` (x, y) per frame (None for ``pan``, which has no object).

    Rendered again from the clip's own generator, so it is the clip in the shards (before
    video compression) without reading them.
    """
    names = STYLES[style]
    label = index // per_class
    if not 0 <= label < len(names):
        raise IndexError(f"clip {index} out of range for {per_class} clips x {len(names)} classes")
    rng = clip_rng(seed, style, split, index)
    if style == "objects":
        clip, centre = render_objects_with_path(names[label], rng, size, frames)
        return clip, label, centre
    return RENDER[style](names[label], rng, size, frames), label, None


def encode_clip(frames: np.ndarray, fps: float = 8.0) -> bytes:
    """H.264 mp4 bytes of uint8 ``[T, H, W, 3]`` (fast preset: these corpora are not committed)."""
    return encode_frames(
        frames, fps=fps, options={"crf": "23", "preset": "veryfast", "threads": "1"}
    )


def write_split(
    out_dir: str | Path,
    style: str,
    split: str,
    per_class: int,
    *,
    seed: int = 0,
    size: int = 64,
    frames: int = 32,
    classes: Sequence[str] | None = None,
) -> Path:
    """Write ``per_class`` clips of every class of ``style`` under ``out_dir/split/`` and the list
    ``out_dir/<split>.txt`` in a seeded random order; returns the list path.

    Complete splits (list file present) are left as they are.
    """
    if style not in STYLES:
        raise ValueError(f"unknown corpus style {style!r}; expected one of {sorted(STYLES)}")
    out = Path(out_dir)
    listing = out / f"{split}.txt"
    if listing.is_file():
        return listing
    names = tuple(classes or STYLES[style])
    (out / split).mkdir(parents=True, exist_ok=True)
    lines = []
    for label, cls in enumerate(names):
        for i in range(per_class):
            index = label * per_class + i
            frames_ = RENDER[style](cls, clip_rng(seed, style, split, index), size, frames)
            rel = f"{split}/{cls}_{i:04d}.mp4"
            (out / rel).write_bytes(encode_clip(frames_))
            lines.append(f"{rel} {label}")
    order = np.random.default_rng([seed, zlib.crc32(split.encode()), 7]).permutation(len(lines))
    (out / "labels.txt").write_text("".join(f"{c}\n" for c in names))
    tmp = listing.with_suffix(".tmp")
    tmp.write_text("".join(f"{lines[i]}\n" for i in order))
    tmp.replace(listing)  # the list is written last: its presence marks the split complete
    return listing
