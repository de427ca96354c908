"""Violation-of-expectation pairs for ``vjepa surprise`` on sample-like scenes (a package module, so
the demo can generate them from an installed wheel too; ``tools/make_surprise_pairs.py`` is its CLI).

Every scene has two object states, ``a`` and ``b``, that differ by one property:

- ``vanish``: the object is there (a) or not (b): object permanence;
- ``teleport``: the object is at its place (a) or 0.4 frame sizes away (b): continuity;
- ``colour``: the object is grey (a) or red (b);
- ``shape``: the object is one shape (a) or another of the same size and texture (b);
- ``occluded``: vanish behind an occluder, IntPhys style: an opaque bar sweeps across the
  object in all four renderings and the switch happens while the object is fully hidden, so
  no frame shows the object popping in or out; only what is (or is not) there after the bar
  has passed tells possible from impossible. (The object is placed at the frame's centre at
  the violation frame, so the bar that passes it never meets an edge.)

Each scene is rendered four times, IntPhys style (Riochet et al.): ``aa`` and ``bb`` keep one
state all clip long (possible); ``ab`` and ``ba`` switch at a violation frame drawn near the
middle (impossible). It gives two pairs, ``aa`` vs ``ab`` and ``bb`` vs ``ba``: each pair shares
its first half, each pair's second halves hold the same *kind* of content, and across the two
pairs every state appears as often in possible as in impossible videos. So a score that only
reacts to what a frame shows (a red object, an empty scene) cannot beat 50 % on average: it
has to compare the frames with what came before. (With the plain design, possible = ``aa`` vs
impossible = ``ab`` only, a random-init network scored 71 % on 100 pairs: red objects and empty
scenes simply give larger feature errors.)

The scenes look like the sample corpus (tools/make_sample_data.py): a textured grey object over
a tiling plane-wave background in the same two grey tones, the whole scene panning left, right,
up or down. The renderer is kept here (small, self-contained) so changes to the sample corpus'
generator never move these pairs.

Usage::

    python tools/make_surprise_pairs.py --out runs/surprise_pairs --pairs 100

writes ``<out>/videos/scene_NNN_<category>_<aa|ab|bb|ba>.mp4`` and ``<out>/pairs.csv`` (header
``possible,impossible,category``; paths relative to the CSV). From Python (the demo):
``write_pairs(out_dir, num_pairs=100, seed=0) -> Path`` of the CSV.
"""

from __future__ import annotations

import argparse
import csv
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vjepa.data.encode import encode_frames

CATEGORIES: tuple[str, ...] = ("vanish", "teleport", "colour", "shape", "occluded")
TONES = np.array([[20.0, 20.0, 20.0], [235.0, 235.0, 235.0]])
"""The two grey levels of every texture, as in the sample corpus."""
RED = np.array([1.0, 0.3, 0.3])
"""Channel gains of the ``colour`` violation: grey turns red."""
OCCLUDER = np.array([120.0, 120.0, 150.0])
"""The flat colour of the ``occluded`` bar (neither tone of the scene)."""
_DIRECTIONS = ((-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))


@dataclass
class Scene:
    """Everything drawn for one scene: the possible and impossible videos share it."""

    size: int
    num_frames: int
    waves: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # fx, fy, phase, amp
    texture: np.ndarray  # [n, n] mix in [0, 1] between the two tones
    shape: int
    rx: float
    ry: float
    cx0: float
    cy0: float
    velocity: tuple[float, float]  # pixels per frame (camera pan: scene and object together)
    violation_frame: int
    new_shape: int  # for "shape"
    jump: tuple[float, float]  # for "teleport", pixels
    sweep: float  # for "occluded": the bar's speed relative to the object, pixels per frame


def draw_scene(rng: np.random.Generator, size: int = 64, num_frames: int = 32) -> Scene:
    """All random draws of a scene, in a fixed order (so a seed rebuilds it exactly)."""
    scale = size / 64.0
    waves = 4
    fx = rng.integers(-4, 5, size=waves)
    fy = rng.integers(1, 5, size=waves) * rng.choice([-1, 1], size=waves)
    phase = rng.uniform(0, 2 * np.pi, size=waves)
    amp = rng.uniform(0.5, 1.0, size=waves)
    n = 32
    v, u = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    angle, freq = rng.uniform(0, np.pi), rng.uniform(1.5, 3.5)
    texture = 0.5 + 0.5 * np.sin(np.pi * freq * (u * np.cos(angle) + v * np.sin(angle)))
    shape = int(rng.integers(3))
    radius = rng.uniform(8.0, 11.0) * scale
    aspect = rng.uniform(0.8, 1.25)
    cx0, cy0 = rng.uniform(0, size, size=2)
    dx, dy = _DIRECTIONS[int(rng.integers(4))]
    speed = rng.uniform(1.5, 3.0) * scale
    lo, hi = int(0.4 * num_frames), int(0.6 * num_frames)
    violation = int(rng.integers(lo, hi + 1))
    new_shape = (shape + 1 + int(rng.integers(2))) % 3
    jump_angle = rng.uniform(0, 2 * np.pi)
    jump = 0.4 * size  # far enough to leave the object's own footprint
    sweep = 4.0 * scale * float(rng.choice([-1.0, 1.0]))  # drawn last: earlier draws unchanged
    return Scene(
        size=size,
        num_frames=num_frames,
        waves=(fx, fy, phase, amp),
        texture=texture,
        shape=shape,
        rx=radius * np.sqrt(aspect),
        ry=radius / np.sqrt(aspect),
        cx0=float(cx0),
        cy0=float(cy0),
        velocity=(dx * speed, dy * speed),
        violation_frame=violation,
        new_shape=new_shape,
        jump=(jump * np.cos(jump_angle), jump * np.sin(jump_angle)),
        sweep=sweep,
    )


def _shape_distance(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1.0 on the edge of a unit square (0), disc (1) or diamond (2)."""
    if kind == 0:
        return np.maximum(np.abs(u), np.abs(v))
    if kind == 1:
        return np.sqrt(u**2 + v**2)
    return (np.abs(u) + np.abs(v)) / 1.2


def render(scene: Scene, category: str, states: str = "aa") -> np.ndarray:
    """uint8 frames ``[T, H, W, 3]`` of ``scene``: state ``states[0]`` before the violation
    frame, ``states[1]`` from it on (``aa`` / ``bb``: possible; ``ab`` / ``ba``: impossible)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown violation category {category!r}; choose from {CATEGORIES}")
    if len(states) != 2 or set(states) - {"a", "b"}:
        raise ValueError(f"states must be two of 'a' / 'b' (e.g. 'ab'), got {states!r}")
    size = scene.size
    fx, fy, phase, amp = scene.waves
    ys, xs = np.mgrid[0:size, 0:size].astype(float) + 0.5  # pixel centres
    n = scene.texture.shape[0]
    frames = np.empty((scene.num_frames, size, size, 3), dtype=np.uint8)
    for t in range(scene.num_frames):
        b = states[int(t >= scene.violation_frame)] == "b"  # the altered state at frame t
        vx, vy = scene.velocity
        bx, by = xs - vx * t, ys - vy * t  # the background pans with the camera
        arg = 2 * np.pi * (fx * bx[..., None] + fy * by[..., None]) / size
        mix = 0.5 + 0.5 * (amp * np.sin(arg + phase)).sum(-1) / amp.sum()  # [H, W]
        frame = TONES[0] * (1 - mix[..., None]) + TONES[1] * mix[..., None]  # [H, W, 3]
        cx, cy = scene.cx0 + vx * t, scene.cy0 + vy * t
        if category == "occluded":  # the object at the centre at the violation frame
            cx = size / 2 + vx * (t - scene.violation_frame)
            cy = size / 2 + vy * (t - scene.violation_frame)
            frame = _occlude(frame, scene, xs, cx, t) if b else frame
        if b and category in ("vanish", "occluded"):
            frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
            continue
        if b and category == "teleport":
            cx, cy = cx + scene.jump[0], cy + scene.jump[1]
        ox = (xs - cx + size / 2) % size - size / 2  # on a torus, as the sample scenes
        oy = (ys - cy + size / 2) % size - size / 2
        u, v = ox / scene.rx, oy / scene.ry
        shape = scene.new_shape if b and category == "shape" else scene.shape
        radius = min(scene.rx, scene.ry)
        alpha = np.clip((1.0 - _shape_distance(shape, u, v)) * radius + 0.5, 0.0, 1.0)[..., None]
        tu = np.clip(((u + 1) * 0.5 * (n - 1)).round().astype(int), 0, n - 1)
        tv = np.clip(((v + 1) * 0.5 * (n - 1)).round().astype(int), 0, n - 1)
        tex = scene.texture[tv, tu]  # [H, W]
        obj = TONES[0] * (1 - tex[..., None]) + TONES[1] * tex[..., None]  # [H, W, 3]
        if b and category == "colour":
            obj = obj * RED  # the texture stays, its hue changes
        frame = frame * (1 - alpha) + obj * alpha
        if category == "occluded":
            frame = _occlude(frame, scene, xs, cx, t)
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frames


def occluder_half_width(scene: Scene) -> float:
    """Half the bar's width: the object's widest extent (the diamond reaches 1.2 radii), the
    antialiased edge, and one frame of relative motion, so the object is fully hidden from
    the frame before the violation frame to the frame after it."""
    return 1.2 * max(scene.rx, scene.ry) + 1.0 + abs(scene.sweep)


def _occlude(frame: np.ndarray, scene: Scene, xs: np.ndarray, cx: float, t: int) -> np.ndarray:
    """Draw the vertical bar of an ``occluded`` scene at frame ``t`` over ``frame`` [H, W, 3].

    The bar is centred on the object's column at the violation frame and sweeps past it at
    ``scene.sweep`` pixels per frame relative to the object; it enters and leaves the frame
    once (it does not wrap around as the scene does)."""
    bx = cx + scene.sweep * (t - scene.violation_frame)
    d = np.abs(xs - bx)  # [H, W]
    cover = np.clip(occluder_half_width(scene) - d + 0.5, 0.0, 1.0)[..., None]
    return frame * (1 - cover) + OCCLUDER * cover


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index``: one stream per scene, so adding scenes moves none."""
    return np.random.default_rng([seed, zlib.crc32(b"surprise"), index])


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 23) -> bytes:
    """H.264 mp4, single-threaded x264 without mbtree (byte-reproducible, as the sample corpus)."""
    options = {"crf": str(crf), "preset": "slow", "threads": "1", "x264-params": "mbtree=0"}
    return encode_frames(frames, fps=fps, options=options)


PAIRS_OF_SCENE = (("aa", "ab"), ("bb", "ba"))
"""The two (possible, impossible) pairs of a scene's four renderings."""


def pair_rows(num_pairs: int, categories: Sequence[str] = CATEGORIES) -> list[tuple[str, str, str]]:
    """CSV rows ``(possible, impossible, category)``: two per scene, categories in turn."""
    rows = []
    for i in range(num_pairs):
        scene, (pos, imp) = i // 2, PAIRS_OF_SCENE[i % 2]
        cat = categories[scene % len(categories)]
        stem = f"videos/scene_{scene:03d}_{cat}"
        rows.append((f"{stem}_{pos}.mp4", f"{stem}_{imp}.mp4", cat))
    return rows


def write_pairs(
    out_dir: str | Path,
    num_pairs: int = 100,
    *,
    seed: int = 0,
    size: int = 64,
    num_frames: int = 32,
    fps: float = 8.0,
    categories: Sequence[str] = CATEGORIES,
    crf: int = 23,
) -> Path:
    """Write ``num_pairs`` pairs (two per scene) under ``out_dir``; returns pairs.csv.

    About 9 KB per video at 64 x 64 x 32 frames. Skips the work when a complete pairs.csv
    (written last) with the same rows and all its videos exists.
    """
    out = Path(out_dir)
    bad = [c for c in categories if c not in CATEGORIES]
    if bad or not categories:
        raise ValueError(f"unknown violation categories {bad}; choose from {CATEGORIES}")
    rows = pair_rows(num_pairs, categories)
    csv_path = out / "pairs.csv"
    if csv_path.is_file() and _rows(csv_path) == rows:
        if all((out / p).is_file() and (out / q).is_file() for p, q, _ in rows):
            return csv_path
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for i, (possible, impossible, cat) in enumerate(rows):
        scene = draw_scene(scene_rng(seed, i // 2), size, num_frames)
        for rel in (possible, impossible):
            states = rel[-6:-4]  # .../scene_NNN_<cat>_<states>.mp4
            (out / rel).write_bytes(encode_mp4(render(scene, cat, states), fps, crf))
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["possible", "impossible", "category"])
        writer.writerows(rows)
    tmp.replace(csv_path)
    return csv_path


def _rows(path: Path) -> list[tuple[str, ...]]:
    with open(path, newline="") as f:
        return [tuple(r) for r in list(csv.reader(f))[1:]]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/surprise_pairs"))
    parser.add_argument("--pairs", type=int, default=100, help="number of pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="frame height and width (even)")
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument(
        "--categories", default=",".join(CATEGORIES), help="comma-separated violation kinds"
    )
    args = parser.parse_args(argv)
    path = write_pairs(
        args.out,
        args.pairs,
        seed=args.seed,
        size=args.size,
        num_frames=args.num_frames,
        fps=args.fps,
        categories=[c for c in args.categories.split(",") if c],
    )
    print(f"wrote {args.pairs} pairs to {path}")


if __name__ == "__main__":
    main()
