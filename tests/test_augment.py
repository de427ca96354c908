"""Clip augmentation, checked on the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vjepa.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    drift_offsets,
    eval_transform,
    normalize,
    normalize_,
    random_resized_box,
    train_transform,
)


def textured_frames(t: int = 6, h: int = 60, w: int = 80) -> np.ndarray:
    """A fixed random texture plus a per-frame brightness offset of 20 * t."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 100, (h, w, 3))  # [H, W, 3]
    frames = base[None] + 20 * np.arange(t)[:, None, None, None]  # [T, H, W, 3]
    return frames.astype(np.uint8)


def reference(
    frame: np.ndarray, box: tuple[int, int, int, int], size: int, flip: bool
) -> torch.Tensor:
    top, left, h, w = box
    x = torch.from_numpy(frame[top : top + h, left : left + w]).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x.flip(-1) if flip else x)[0]  # [C, S, S]


@pytest.mark.parametrize("seed", range(6))
def test_train_crop_and_flip_are_shared_by_all_frames(seed: int) -> None:
    frames = textured_frames()
    out = train_transform(
        frames, crop_size=32, generator=torch.Generator().manual_seed(seed), normalize=False
    )
    assert out.shape == (3, 6, 32, 32) and out.dtype == torch.uint8
    # Replay the draws: the box, then the flip.
    g = torch.Generator().manual_seed(seed)
    box = random_resized_box(60, 80, scale=(0.3, 1.0), aspect=(0.75, 1.35), generator=g)
    flip = bool(torch.rand(1, generator=g).item() < 0.5)
    for t in range(6):
        ref = reference(frames[t], box, 32, flip)  # every frame: the SAME crop of its own input
        assert (out[:, t].float() - ref).abs().max() <= 1.0
    # Frames differ only by their offset: a per-frame crop would break this.
    diff = out[:, 1:].float() - out[:, :1].float()  # [C, T-1, S, S]
    np.testing.assert_allclose(diff.mean(dim=(0, 2, 3)), 20 * np.arange(1, 6), atol=0.6)
    assert diff.std(dim=(0, 2, 3)).max() < 0.6


@pytest.mark.parametrize("seed", range(6))
def test_drift_moves_the_window_at_one_velocity_inside_the_frame(seed: int) -> None:
    """data.drift: each frame is the same-size crop of its own frame at a box that moves by a
    constant velocity of at most ``drift`` px per frame; drift 0 is the old transform exactly."""
    frames = np.repeat(textured_frames(1, 60, 80), 8, axis=0)  # a STATIC scene, [8, 60, 80, 3]
    g = torch.Generator().manual_seed(seed)
    out = train_transform(frames, crop_size=32, scale=(0.3, 0.5), hflip=False, drift=3.0,
                          generator=g, normalize=False)  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    box = random_resized_box(60, 80, scale=(0.3, 0.5), aspect=(0.75, 1.35), generator=g)
    tops, lefts = drift_offsets(8, (60, 80), box, 3.0, g)
    steps = np.diff(np.stack([tops, lefts], 1), axis=0)  # [7, 2]
    assert np.abs(steps).max() <= 4 and np.ptp(steps, axis=0).max() <= 1  # one velocity, rounded
    assert all(0 <= y <= 60 - box[2] and 0 <= x <= 80 - box[3] for y, x in zip(tops, lefts))
    for t in range(8):
        ref = reference(frames[t], (tops[t], lefts[t], box[2], box[3]), 32, False)
        assert (out[:, t].float() - ref).abs().max() <= 1.01  # uint8 rounding
    moved = np.abs(np.array([tops[-1] - tops[0], lefts[-1] - lefts[0]])).max()
    still = out[:, -1].float().sub(out[:, 0].float()).abs().mean()
    assert (moved == 0) == bool(still == 0)  # the static scene moves exactly when the box does
    kw = {"crop_size": 32, "normalize": False}
    old = train_transform(frames, generator=torch.Generator().manual_seed(seed), **kw)
    off = train_transform(frames, drift=0.0, generator=torch.Generator().manual_seed(seed), **kw)
    assert torch.equal(old, off)  # drift 0 draws nothing: the seed order of old runs holds


def test_flip_happens_for_some_seeds_and_the_box_varies() -> None:
    flips, boxes = set(), set()
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        boxes.add(random_resized_box(60, 80, scale=(0.3, 1.0), aspect=(0.75, 1.35), generator=g))
        flips.add(bool(torch.rand(1, generator=g).item() < 0.5))
    assert flips == {True, False} and len(boxes) == 20
    for top, left, h, w in boxes:
        assert 0.3 * 4800 * 0.9 <= h * w <= 4800 and top + h <= 60 and left + w <= 80


def test_train_transform_normalises_and_is_deterministic() -> None:
    frames = textured_frames()
    a = train_transform(frames, crop_size=32, generator=torch.Generator().manual_seed(3))
    b = train_transform(frames, crop_size=32, generator=torch.Generator().manual_seed(3))
    u = train_transform(
        frames, crop_size=32, generator=torch.Generator().manual_seed(3), normalize=False
    )
    assert a.dtype == torch.float32 and torch.equal(a, b)
    torch.testing.assert_close(a, normalize(u))
    no_flip = train_transform(
        frames, crop_size=32, hflip=False, generator=torch.Generator().manual_seed(3)
    )
    assert no_flip.shape == a.shape


def test_eval_three_crops_along_the_long_side() -> None:
    x = np.tile(np.arange(96, dtype=np.uint8)[None, None, :, None] * 2, (4, 48, 1, 3))  # ramp in x
    out = eval_transform(x, crop_size=32, num_crops=3, normalize=False)  # 48x96 -> 32x64
    assert out.shape == (3, 3, 4, 32, 32)
    full = F.interpolate(
        torch.from_numpy(x[0]).permute(2, 0, 1)[None].float(),
        size=(32, 64),
        mode="bilinear",
        antialias=True,
    )
    for v, off in enumerate((0, 16, 32)):
        assert (out[v, :, 0].float() - full[0, :, :, off : off + 32]).abs().max() <= 1.0
    means = out.float().mean(dim=(1, 2, 3, 4))
    assert means[0] < means[1] < means[2]
    centre = eval_transform(x, crop_size=32, num_crops=1, normalize=False)
    assert torch.equal(centre[0], out[1])
    portrait = eval_transform(
        np.ascontiguousarray(x.transpose(0, 2, 1, 3)), crop_size=32, num_crops=3
    )
    assert portrait.shape == (3, 3, 4, 32, 32)


def test_normalize_uint8_and_float_on_any_leading_shape() -> None:
    mean_px = torch.tensor([round(m * 255) for m in IMAGENET_MEAN], dtype=torch.uint8)
    x = mean_px.view(1, 3, 1, 1, 1).expand(2, 3, 4, 5, 5).clone()  # [B, C, T, H, W]
    y = normalize(x)
    assert y.dtype == torch.float32 and y.abs().max() < 0.01
    torch.testing.assert_close(normalize(x.float()), y)
    torch.testing.assert_close(normalize_(x.float()), y)  # the in-place variant agrees
    white = normalize(torch.full((3, 1, 1, 1), 255, dtype=torch.uint8)).flatten()
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(white, torch.tensor(expected))
