"""The object-position probe (issue 27): the wrap-aware error, the ridge probe on a hand-made
clip, and the objects corpus's known object centres."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vjepa.data.synthetic import STYLES, render_objects, split_clip
from vjepa.train.metrics import position_probe_error, torus_error, torus_positions, torus_targets

SIZE = 32


def test_torus_error_wraps() -> None:
    a = torch.tensor([[31.5, 0.0], [10.0, 10.0]])
    b = torch.tensor([[0.5, 0.0], [13.0, 14.0]])
    assert torus_error(a, b, SIZE).tolist() == pytest.approx([1.0, 5.0])
    xy = torch.tensor([[0.25, 31.0], [16.0, 3.0]])
    assert torch.allclose(torus_positions(torus_targets(xy, SIZE), SIZE), xy.double())


def _square_clip(x: float, y: float) -> np.ndarray:
    """A hand-made frame: a bright 4x4 square centred at (x, y) on a torus over noise."""
    rng = np.random.default_rng(int(x * 1000 + y))
    img = rng.uniform(0, 0.2, (SIZE, SIZE))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dx = (xx - x + SIZE / 2) % SIZE - SIZE / 2
    dy = (yy - y + SIZE / 2) % SIZE - SIZE / 2
    img[(np.abs(dx) < 2) & (np.abs(dy) < 2)] = 1.0
    return img


def test_position_probe_finds_a_visible_object_and_not_an_invisible_one() -> None:
    rng = np.random.default_rng(0)
    xy = torch.from_numpy(rng.uniform(0, SIZE, (500, 2)))
    # features that see the object: the frame's pixels; features that do not: the noise alone
    seen = torch.from_numpy(np.stack([_square_clip(x, y).ravel() for x, y in xy.tolist()]))
    blind = torch.from_numpy(rng.uniform(0, 0.2, (500, SIZE * SIZE)))
    good = position_probe_error(seen[:400], xy[:400], seen[400:], xy[400:], SIZE)
    bad = position_probe_error(blind[:400], xy[:400], blind[400:], xy[400:], SIZE)
    assert good["position_error"] < 3.0  # px, on a 32 px torus
    assert bad["position_error"] > 0.8 * bad["position_error_const"] > 5.0
    assert good["position_error"] < 0.5 * bad["position_error"]


def test_objects_clips_know_their_object_centre() -> None:
    names = STYLES["objects"]
    for label in (names.index("right"), names.index("orbit"), names.index("still")):
        frames, got, centre = split_clip("objects", "dev", label * 3 + 1, 3, seed=1, frames=12)
        assert got == label and centre.shape == (12, 2)
        assert ((centre >= 0) & (centre < 64)).all()
        # the same clip as the renderer gives (the generator is replayed)
        from vjepa.data.synthetic import clip_rng

        again = render_objects(names[label], clip_rng(1, "objects", "dev", label * 3 + 1), 64, 12)
        assert np.array_equal(frames, again)
        if names[label] == "still":
            assert np.ptp(centre, axis=0).max() == 0
            continue
        # pixels that change between two frames lie near the object's centre at one of them
        diff = np.abs(frames[6].astype(int) - frames[0].astype(int)).sum(-1) > 60  # [H, W]
        ys, xs = np.nonzero(diff)
        assert len(xs) > 10
        pts = torch.from_numpy(np.stack([xs + 0.5, ys + 0.5], axis=1))
        near = torch.minimum(
            torus_error(pts, torch.from_numpy(centre[0]).expand_as(pts), 64),
            torus_error(pts, torch.from_numpy(centre[6]).expand_as(pts), 64),
        )
        assert near.max() < 14.0  # the object's radius is at most 6.5 px (x 1.2 if bouncing)
    with pytest.raises(IndexError):
        split_clip("objects", "dev", 8 * 3, 3, seed=1)
