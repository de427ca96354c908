"""Generate the embedded sample corpus: short synthetic clips whose class is a MOTION.

Each clip shows one textured object over a textured background, both drawn in the same two grey
tones, and the whole scene moves as if the camera panned or zoomed. The class says only how it
moves (``left``, ``right``, ``up``, ``down``: translation with wrap-around; ``expand``,
``shrink``: a zoom about the object's centre). Every appearance factor (textures, shape, object
size, start position, speed) is drawn from the same distribution for all classes, so a single
frame carries no class information and a probe has to read motion.

Usage::

    python tools/make_sample_data.py --out data/sample

writes ``<out>/<class>/<class>_<NNN>.mp4`` plus ``labels.txt``, ``train.txt`` and ``val.txt``
(the original V-JEPA list format: ``relative/path.mp4 <label_int>``).
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vjepa.data.encode import encode_frames

CLASSES: tuple[str, ...] = ("down", "expand", "left", "right", "shrink", "up")
"""Class names; the label of a class is its index in ``sorted(CLASSES)`` (already sorted)."""

# Unit direction (dx, dy) in image coordinates (y grows downwards) for the translation classes.
_DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
# Scale end points for the zoom classes (linear in time so the edge speed is the same all clip
# long); the translation classes draw their fixed scale between the same end points.
_SCALE_SMALL = (0.4, 0.55)
_SCALE_LARGE = (1.5, 1.8)
SPEED_RANGE = (1.5, 3.0)
"""Translation speed in pixels per frame at 64x64 (scaled with ``size``)."""


def _smooth_noise(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], ``[size, size, channels]``.

    Bilinear upsampling of a coarse random grid: smooth textures keep the H.264 bit-rate (and so
    the committed corpus) small while still giving the motion something to track.
    """
    cells = int(rng.integers(3, 8))
    grid = rng.random((cells + 1, cells + 1, channels))
    pos = np.linspace(0.0, cells, size, endpoint=False)
    i0 = np.floor(pos).astype(int)
    f = pos - i0
    rows = grid[i0] * (1 - f)[:, None, None] + grid[i0 + 1] * f[:, None, None]  # [S, cells + 1, ch]
    out = rows[:, i0] * (1 - f)[None, :, None] + rows[:, i0 + 1] * f[None, :, None]  # [S, S, ch]
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


TONES = np.array([[20.0, 20.0, 20.0], [235.0, 235.0, 235.0]])
"""The two grey levels every texture mixes between, ``[2, 3]`` RGB.

Fixed on purpose: with a random colour palette per clip, colour was the easiest clip-level factor
for the masked-prediction objective to encode (it is shared by context and target), and a short
pretraining collapsed onto it and lost the motion (see data/README.md, "Why grey").
"""


class _Background:
    """A textured background that tiles the frame (a torus), so it can pan and zoom seamlessly.

    A sum of a few random plane waves with whole numbers of cycles per frame, mixed between
    the two ``TONES``; ``render(x, y)`` samples it at any (float) pixel coordinates.
    """

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.size = size
        waves = 4
        self.fx = rng.integers(-4, 5, size=waves)
        self.fy = rng.integers(1, 5, size=waves) * rng.choice([-1, 1], size=waves)
        self.phase = rng.uniform(0, 2 * np.pi, size=waves)
        self.amp = rng.uniform(0.5, 1.0, size=waves)

    def render(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        arg = 2 * np.pi * (self.fx * x[..., None] + self.fy * y[..., None]) / self.size
        field = (self.amp * np.sin(arg + self.phase)).sum(-1) / self.amp.sum()  # [-1, 1]
        mix = (0.5 + 0.5 * field)[..., None]
        return TONES[0] * (1 - mix) + TONES[1] * mix


def _object_texture(rng: np.random.Generator) -> np.ndarray:
    """Texture of the object in its own normalised coordinates, float ``[N, N, 3]``.

    ``N`` texels span the object's [-1, 1] x [-1, 1] box; renderers sample it bilinearly, so
    the same texture can be translated or zoomed with sub-pixel smoothness.
    """
    n = 32
    kind = rng.integers(3)
    v, u = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    if kind == 0:  # stripes at a random angle and frequency
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(1.5, 3.5)
        mix = 0.5 + 0.5 * np.sin(np.pi * freq * (u * np.cos(angle) + v * np.sin(angle)))
    elif kind == 1:  # checkerboard with a random number of squares
        k = rng.uniform(1.5, 3.0)
        mix = ((np.floor((u + 1) * k) + np.floor((v + 1) * k)) % 2).astype(float)
    else:  # blobs
        mix = _smooth_noise(rng, n, 1)[..., 0]
    return TONES[0] * (1 - mix[..., None]) + TONES[1] * mix[..., None]


def _shape_distance(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised distance of ``u, v`` from the centre of a unit shape (1.0 on its edge).

    The caller turns it into a soft (one pixel wide) edge, which avoids aliasing flicker that
    would look like motion noise after compression.
    """
    if kind == 0:  # square
        dist = np.maximum(np.abs(u), np.abs(v))
    elif kind == 1:  # disc
        dist = np.sqrt(u**2 + v**2)
    else:  # diamond
        dist = (np.abs(u) + np.abs(v)) / 1.2
    return dist


def _sample_bilinear(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample ``tex`` [N, N, 3] at normalised coordinates ``u, v`` in [-1, 1] (clamped)."""
    n = tex.shape[0]
    x = np.clip((u + 1) * 0.5 * (n - 1), 0, n - 1)
    y = np.clip((v + 1) * 0.5 * (n - 1), 0, n - 1)
    x0 = np.minimum(np.floor(x).astype(int), n - 2)
    y0 = np.minimum(np.floor(y).astype(int), n - 2)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    top = tex[y0, x0] * (1 - fx) + tex[y0, x0 + 1] * fx
    bottom = tex[y0 + 1, x0] * (1 - fx) + tex[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def make_motion_video(
    cls: str, rng: np.random.Generator, size: int = 64, num_frames: int = 32
) -> np.ndarray:
    """Render one clip of class ``cls``; returns uint8 frames ``[T, H, W, 3]``.

    All appearance draws happen first and in the same order for every class, so two calls with
    generators in the same state give the same background, object and start position, and the
    clips differ only by their motion (the tests rely on this to compare classes).
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown class {cls!r}; expected one of {CLASSES}")
    scale_px = size / 64.0
    background = _Background(rng, size)
    texture = _object_texture(rng)  # [N, N, 3]
    shape = int(rng.integers(3))
    radius = rng.uniform(7.0, 10.0) * scale_px  # half-size of the object in pixels
    aspect = rng.uniform(0.75, 1.33)  # width / height of the object's box
    rx, ry = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    cx0, cy0 = rng.uniform(0, size, size=2)
    speed = rng.uniform(*SPEED_RANGE) * scale_px
    s_small, s_large = rng.uniform(*_SCALE_SMALL), rng.uniform(*_SCALE_LARGE)
    # A translating object keeps one scale, drawn uniformly between the zoom classes' end
    # points: the per-frame marginal of object size is then the same for every class.
    s_fixed = rng.uniform(s_small, s_large)

    ys, xs = np.mgrid[0:size, 0:size].astype(float) + 0.5  # pixel centres
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        # The whole scene moves (a camera pan or zoom): the background with the object, so the
        # motion is visible in every token, not only in the few the object covers.
        if cls in _DIRECTIONS:
            dx, dy = _DIRECTIONS[cls]
            cx, cy, scale = cx0 + dx * speed * t, cy0 + dy * speed * t, s_fixed
            bx, by = xs - dx * speed * t, ys - dy * speed * t
        else:
            frac = t / max(num_frames - 1, 1)
            if cls == "shrink":
                frac = 1.0 - frac
            cx, cy, scale = cx0, cy0, s_small + (s_large - s_small) * frac
            zoom = scale / s_fixed
            bx, by = cx0 + (xs - cx0) / zoom, cy0 + (ys - cy0) / zoom
        # Every class renders on a torus: a translating object never leaves the frame, and an
        # object cut by the border (or its position) never tells translation from zoom.
        ox = (xs - cx + size / 2) % size - size / 2
        oy = (ys - cy + size / 2) % size - size / 2
        u, v = ox / (rx * scale), oy / (ry * scale)
        dist = _shape_distance(shape, u, v)
        # One pixel of soft edge: the distance unit is (radius * scale) pixels.
        alpha = np.clip((1.0 - dist) * radius * scale + 0.5, 0.0, 1.0)[..., None]
        obj = _sample_bilinear(texture, u, v)
        frame = background.render(bx, by) * (1 - alpha) + obj * alpha
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frames


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 29) -> bytes:
    """Encode uint8 ``[T, H, W, 3]`` RGB frames as H.264 (yuv420p) in an mp4 container.

    Single-threaded x264 without macroblock-tree rate control keeps the output byte-identical
    between runs. ``crf`` trades size against fidelity: at 29 a 64x64, 32-frame clip is about
    6 KB and decodes within a mean absolute error of about 3.5 (of 255), so the corpus stays
    well below its 3 MB budget.
    """
    # mbtree off: with it, x264 gave different bytes for the same frames in about one clip of
    # six at this tiny size (run-dependent), which broke byte-for-byte reproducibility.
    options = {"crf": str(crf), "preset": "slow", "threads": "1", "x264-params": "mbtree=0"}
    return encode_frames(frames, fps=fps, options=options)


def video_rng(seed: int, cls: str, index: int) -> np.random.Generator:
    """The generator of video ``index`` of class ``cls``.

    ``make_motion_video(cls, video_rng(seed, cls, index))`` rebuilds any committed clip; one
    stream per video, so adding videos never changes the others.
    """
    return np.random.default_rng([seed, zlib.crc32(cls.encode()), index])


def write_corpus(
    out_dir: str | Path,
    videos_per_class: int = 48,
    size: int = 64,
    num_frames: int = 32,
    fps: float = 8.0,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    val_fraction: float = 0.25,
    crf: int = 29,
) -> list[Path]:
    """Write the corpus under ``out_dir``; returns the written mp4 paths (sorted).

    Also writes ``labels.txt`` (sorted class names, one a line: line i is label i) and
    ``train.txt`` / ``val.txt`` (``<class>/<file>.mp4 <label>``), split per class so both sides
    hold every class in the same proportion.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(classes)
    n_val = int(round(videos_per_class * val_fraction))
    split_rng = np.random.default_rng([seed, 1])  # separate stream: the split never moves pixels
    paths: list[Path] = []
    train_lines: list[str] = []
    val_lines: list[str] = []
    for label, cls in enumerate(names):
        (out / cls).mkdir(exist_ok=True)
        val_idx = set(split_rng.permutation(videos_per_class)[:n_val].tolist())
        for i in range(videos_per_class):
            frames = make_motion_video(cls, video_rng(seed, cls, i), size, num_frames)
            rel = f"{cls}/{cls}_{i:03d}.mp4"
            (out / rel).write_bytes(encode_mp4(frames, fps, crf))
            paths.append(out / rel)
            (val_lines if i in val_idx else train_lines).append(f"{rel} {label}")
    (out / "labels.txt").write_text("".join(f"{c}\n" for c in names))
    (out / "train.txt").write_text("".join(f"{line}\n" for line in train_lines))
    (out / "val.txt").write_text("".join(f"{line}\n" for line in val_lines))
    return sorted(paths)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/sample"), help="output folder")
    parser.add_argument("--videos-per-class", type=int, default=48)
    parser.add_argument("--size", type=int, default=64, help="frame height and width (even)")
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crf", type=int, default=29, help="x264 quality (lower: larger files)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    paths = write_corpus(
        args.out,
        args.videos_per_class,
        args.size,
        args.num_frames,
        args.fps,
        args.seed,
        crf=args.crf,
    )
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} videos ({total} bytes of mp4) to {args.out}")


if __name__ == "__main__":
    main()
