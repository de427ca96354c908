"""Pure clip sampling: positions, padding, skipping, fps resampling, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vjepa.data.clips import clip_indices


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_exactly_long_enough_has_one_position() -> None:
    # span = (4 - 1) * 3 + 1 = 10 frames
    for mode in ("random", "uniform", "center"):
        (clip,) = clip_indices(10, frames_per_clip=4, frame_step=3, mode=mode, generator=gen())
        np.testing.assert_array_equal(clip, [0, 3, 6, 9])


def test_random_covers_all_starts_and_is_seeded() -> None:
    starts = {
        int(clip_indices(20, frames_per_clip=4, frame_step=2, generator=gen(s))[0][0])
        for s in range(200)
    }
    assert starts == set(range(0, 20 - 6))  # last index 6 + start <= 19
    a = clip_indices(100, frames_per_clip=8, frame_step=4, num_clips=3, generator=gen(7))
    b = clip_indices(100, frames_per_clip=8, frame_step=4, num_clips=3, generator=gen(7))
    assert all((x == y).all() for x, y in zip(a, b))
    for c in a:
        np.testing.assert_array_equal(np.diff(c), 4)


def test_random_needs_a_generator() -> None:
    with pytest.raises(ValueError, match="Generator"):
        clip_indices(100, frames_per_clip=8, frame_step=4)


def test_uniform_centres_clips_in_segments() -> None:
    clips = clip_indices(90, frames_per_clip=4, frame_step=2, num_clips=3, mode="uniform")
    # segments [0,30) [30,60) [60,90): centres 14.5, 44.5, 74.5; clip extent 6 -> starts 11.5...
    np.testing.assert_array_equal(np.stack(clips)[:, 0], [12, 42, 72])
    np.testing.assert_array_equal(np.stack(clips)[:, -1], [18, 48, 78])


def test_more_clips_than_positions_stay_inside() -> None:
    clips = clip_indices(12, frames_per_clip=4, frame_step=3, num_clips=5, mode="uniform")
    assert len(clips) == 5
    for c in clips:
        assert c.min() >= 0 and c.max() <= 11 and (np.diff(c) == 3).all()
    assert clips[0][0] == 0 and clips[-1][-1] == 11  # clamped at both ends, in order
    assert all(a[0] <= b[0] for a, b in zip(clips, clips[1:]))


def test_center() -> None:
    (clip,) = clip_indices(101, frames_per_clip=5, frame_step=10, mode="center")
    np.testing.assert_array_equal(clip, [30, 40, 50, 60, 70])


def test_short_video_pad_or_skip() -> None:
    (clip,) = clip_indices(5, frames_per_clip=4, frame_step=2, generator=gen())
    np.testing.assert_array_equal(clip, [0, 2, 4, 4])
    (one,) = clip_indices(1, frames_per_clip=4, frame_step=2, mode="uniform")
    np.testing.assert_array_equal(one, [0, 0, 0, 0])
    assert clip_indices(5, frames_per_clip=4, frame_step=2, short_video="skip") is None
    assert clip_indices(0, frames_per_clip=4, frame_step=2, mode="center") is None
    two = clip_indices(3, frames_per_clip=2, frame_step=4, num_clips=2, mode="uniform")
    assert [c.tolist() for c in two] == [[0, 2], [0, 2]]


def test_fps_resampling_uses_fractional_steps() -> None:
    # 30 -> 8 fps: step 3.75, rounded half up per frame
    (clip,) = clip_indices(
        200, frames_per_clip=6, frame_step=99, mode="center", video_fps=30.0, target_fps=8.0
    )
    offsets = clip - clip[0]
    np.testing.assert_array_equal(offsets, [0, 4, 8, 11, 15, 19])
    # 25 -> 25 fps is every frame; no video fps known falls back to frame_step
    (same,) = clip_indices(
        50, frames_per_clip=4, frame_step=3, mode="center", video_fps=25.0, target_fps=25.0
    )
    np.testing.assert_array_equal(np.diff(same), 1)
    (fallback,) = clip_indices(50, frames_per_clip=4, frame_step=3, mode="center", target_fps=8.0)
    np.testing.assert_array_equal(np.diff(fallback), 3)
    # upsampling (target above source) repeats frames
    (up,) = clip_indices(
        10, frames_per_clip=4, frame_step=1, mode="center", video_fps=4.0, target_fps=8.0
    )
    np.testing.assert_array_equal(up - up[0], [0, 1, 1, 2])
