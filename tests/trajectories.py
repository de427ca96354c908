"""Tiny real trajectory shards for world-model tests (``from trajectories import ...``).

A point world: the state is a position in [0, 1]^2, an action in [-1, 1]^2 moves it by
``0.08 * action`` (clipped to the square), and a frame is a dark square of 6 px on a light
floor, rendered at ``size`` px. Samples follow the trajectory-shard contract of
``vjepa collect``: ``<key>.mp4`` (real H.264 through PyAV), ``<key>.actions.npy`` [T-1, 2],
``<key>.states.npy`` [T, 2], ``<key>.json``; written as real tar files.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from vjepa.data.encode import encode_frames

STEP = 0.08


def render(pos: np.ndarray, size: int) -> np.ndarray:
    """[size, size, 3] uint8: light floor, dark 6 px square centred at ``pos`` (y down)."""
    img = np.full((size, size, 3), 220, dtype=np.uint8)
    c = np.clip(np.round(pos * (size - 6)).astype(int), 0, size - 6)
    img[c[1] : c[1] + 6, c[0] : c[0] + 6] = (30, 30, 160)
    return img


def step(pos: np.ndarray, action: np.ndarray) -> np.ndarray:
    return np.clip(pos + STEP * np.clip(action, -1, 1), 0.0, 1.0)


def episode(seed: int, steps: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames [T,H,W,3], actions [T-1,2], states [T,2]) of a persistent random walk."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.1, 0.9, size=2)
    states, actions = [pos], []
    a = rng.uniform(-1, 1, size=2)
    for _ in range(steps - 1):
        if rng.random() < 0.3:  # persistence: keep the action most of the time
            a = rng.uniform(-1, 1, size=2)
        actions.append(a.copy())
        pos = step(pos, a)
        states.append(pos)
    states_a = np.array(states, dtype=np.float32)
    frames = np.stack([render(s, size) for s in states_a])
    return frames, np.array(actions, dtype=np.float32), states_a


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def write_trajectory_shard(
    path: Path,
    *,
    episodes: int,
    steps: int = 12,
    size: int = 32,
    seed: int = 0,
    drop_actions: tuple[int, ...] = (),
) -> Path:
    """One tar of ``episodes`` trajectories; episodes in ``drop_actions`` lack actions.npy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for e in range(episodes):
            frames, actions, states = episode(seed * 1000 + e, steps, size)
            key = f"{seed:03d}{e:05d}"
            _add(tar, f"{key}.mp4", encode_frames(frames, fps=10, options={"crf": "0"}))
            if e not in drop_actions:
                _add(tar, f"{key}.actions.npy", _npy(actions))
            _add(tar, f"{key}.states.npy", _npy(states))
            meta = {
                "env": "tests/trajectories.py:point",
                "seed": seed,
                "episode": e,
                "fps": 10.0,
                "num_frames": steps,
                "action_low": [-1.0, -1.0],
                "action_high": [1.0, 1.0],
                "state_dim": 2,
            }
            _add(tar, f"{key}.json", json.dumps(meta).encode())
    return path
