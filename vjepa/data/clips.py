"""Pure frame-index sampling: which source frames make up each clip of a video.

A clip is ``frames_per_clip`` frames taken every ``step`` source frames, where ``step`` is
``frame_step`` or, with a target frame rate, ``video_fps / target_fps`` (fractional steps are
rounded per frame, so 30 -> 8 fps takes frames 0, 4, 8, 11, 15, ...).

Clip positions:

- ``random``  (training): each clip starts at a uniformly random frame (explicit generator);
- ``uniform`` (evaluation, the "16x2x3" protocol): the video is cut into ``num_clips`` equal
  segments and each clip is centred in its segment (clamped to the video);
- ``center``: every clip is centred in the video.

A video shorter than one clip span is padded by repeating its last frame (``pad``) or skipped
(``skip``: the function returns None).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Mode = Literal["random", "uniform", "center"]


def clip_step(frame_step: int, video_fps: float | None, target_fps: float | None) -> float:
    """Source frames between two clip frames: ``video_fps / target_fps`` or ``frame_step``."""
    if target_fps is not None:
        if target_fps <= 0:
            raise ValueError(f"target fps must be > 0, got {target_fps}")
        if video_fps is not None and video_fps > 0:
            return video_fps / target_fps
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    return float(frame_step)


def _starts(
    num_frames: int, extent: float, num_clips: int, mode: Mode, generator: torch.Generator | None
) -> list[float]:
    """First-frame position of each clip; ``extent`` = distance from first to last frame."""
    max_start = num_frames - 1 - extent  # >= 0 here: the clip fits
    if mode == "random":
        if generator is None:
            raise ValueError("random clip sampling needs an explicit torch.Generator")
        high = int(np.floor(max_start)) + 1
        draws = torch.randint(0, high, (num_clips,), generator=generator)
        return [float(s) for s in draws.tolist()]
    # Whole-frame starts (rounded half up) keep the rounding pattern of a fractional step the
    # same for every clip position.
    if mode == "uniform":
        segment = num_frames / num_clips
        centres = [(i + 0.5) * segment - 0.5 for i in range(num_clips)]
        return [
            float(min(max(np.floor(c - extent / 2 + 0.5), 0.0), np.floor(max_start)))
            for c in centres
        ]
    if mode == "center":
        return [float(np.floor(max_start / 2 + 0.5))] * num_clips
    raise ValueError(f"unknown clip sampling mode {mode!r} (random, uniform or center)")


def clip_indices(
    num_frames: int,
    *,
    frames_per_clip: int,
    frame_step: int,
    num_clips: int = 1,
    mode: Mode = "random",
    generator: torch.Generator | None = None,
    video_fps: float | None = None,
    target_fps: float | None = None,
    short_video: Literal["pad", "skip"] = "pad",
) -> list[np.ndarray] | None:
    """Frame indices of ``num_clips`` clips, each int64 ``[frames_per_clip]``; None = skip.

    Indices are within ``[0, num_frames)`` and non-decreasing inside a clip. A video with
    zero frames is always skipped; one shorter than a clip span is padded with its last frame
    (every clip then starts at frame 0) or skipped, following ``short_video``.
    """
    if frames_per_clip < 1 or num_clips < 1:
        raise ValueError(
            f"frames_per_clip and num_clips must be >= 1, got {frames_per_clip}, {num_clips}"
        )
    if num_frames < 1:
        return None
    step = clip_step(frame_step, video_fps, target_fps)
    offsets = np.arange(frames_per_clip, dtype=np.float64) * step  # [F]
    extent = float(offsets[-1])
    if num_frames - 1 < np.floor(extent + 0.5):  # too short for one clip
        if short_video == "skip":
            return None
        if short_video != "pad":
            raise ValueError(f"short_video must be pad or skip, got {short_video!r}")
        clip = np.minimum(np.floor(offsets + 0.5), num_frames - 1).astype(np.int64)
        return [clip.copy() for _ in range(num_clips)]
    starts = _starts(num_frames, extent, num_clips, mode, generator)
    # Round half up (not numpy's half-to-even) so fractional steps are spread evenly.
    return [
        np.minimum(np.floor(s + offsets + 0.5), num_frames - 1).astype(np.int64) for s in starts
    ]
