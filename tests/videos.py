"""Tiny real videos for tests, encoded with PyAV.

Import from a test module with ``from videos import make_mp4, make_frames`` (pytest puts
``tests/`` on ``sys.path``). The frames are deterministic and frame-dependent so that two
decoders (or a decoder and the ground truth) can be compared frame by frame:

- a smooth horizontal/vertical colour gradient that drifts by 4 px per frame (motion), and
- a mean brightness that rises with the frame index in steps large enough to survive H.264.

The same arguments give the same bytes in a fresh process (single-threaded encoder, explicit
timestamps, bitexact muxing); after other encodes in the same process x264 driven through PyAV
can emit slightly different bytes, so tests compare decoded frames across separate encodes and
bytes only of one encoded file copied around.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vjepa.data import encode

# Container format and codec for a file suffix; webm needs VP8/VP9, avi is classic MPEG-4 part 2.
_CONTAINERS: dict[str, tuple[str, str]] = {
    ".mp4": ("mp4", "libx264"),
    ".m4v": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".avi": ("avi", "mpeg4"),
    ".webm": ("webm", "libvpx"),
}


def make_frames(
    num_frames: int = 16, size: tuple[int, int] = (64, 48), seed: int = 0
) -> np.ndarray:
    """Deterministic RGB frames, uint8 ``[T, H, W, 3]``; ``size`` is ``(width, height)``.

    Frame ``t`` is a gradient shifted by ``4 * t`` pixels with a brightness offset of ``6 * t``
    (mod a safe range), so neighbouring frames differ by far more than the codec error.
    """
    width, height = size
    y = np.arange(height, dtype=np.float32)[:, None]  # [H, 1]
    x = np.arange(width, dtype=np.float32)[None, :]  # [1, W]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        shift = 4.0 * t + 7.0 * seed
        level = 40.0 + (6.0 * t + 13.0 * seed) % 120.0  # brightness that encodes t
        r = level + 60.0 * (0.5 + 0.5 * np.sin((x + shift) / 9.0))  # [1, W]
        g = level + 60.0 * (0.5 + 0.5 * np.cos((y + shift) / 7.0))  # [H, 1]
        b = level + 30.0 * (0.5 + 0.5 * np.sin((x + y + shift) / 11.0))  # [H, W]
        frames[t] = np.stack(np.broadcast_arrays(r, g, b), axis=-1).clip(0, 255).astype(np.uint8)
    return frames


def encode_frames(
    frames: np.ndarray, *, fps: float = 8, fmt: str = "mp4", codec: str = "libx264"
) -> bytes:
    """Encode uint8 ``[T, H, W, 3]`` RGB frames (yuv420p) into a container held in memory."""
    options = {"crf": "18", "preset": "veryfast", "threads": "1"} if codec == "libx264" else None
    # bitexact: no creation time or random segment UID in mov / matroska headers.
    return encode.encode_frames(
        frames,
        fps=fps,
        fmt=fmt,
        codec=codec,
        options=options,
        container_options={"fflags": "+bitexact"},
    )


def make_mp4(
    path: str | Path | None = None,
    *,
    num_frames: int = 16,
    size: tuple[int, int] = (64, 48),
    fps: float = 8,
    seed: int = 0,
    codec: str = "libx264",
) -> bytes:
    """A small real video; returns its bytes and, when ``path`` is given, also writes it there.

    The container follows the suffix of ``path`` (``.mp4`` when ``path`` is None): ``.avi``
    uses MPEG-4 part 2 and ``.webm`` uses VP8 whatever ``codec`` says, since those containers
    do not take H.264 in practice. ``size`` is ``(width, height)``; both must be even.
    """
    suffix = Path(path).suffix.lower() if path is not None else ".mp4"
    fmt, default_codec = _CONTAINERS.get(suffix, ("mp4", codec))
    if suffix in (".mp4", ".m4v", ".mov", ".mkv"):
        default_codec = codec
    data = encode_frames(make_frames(num_frames, size, seed), fps=fps, fmt=fmt, codec=default_codec)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data
