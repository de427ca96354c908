"""Mask generators: disjoint, sorted, equal K, deterministic, ratios, context never empty."""

from __future__ import annotations

import pytest
import torch

from vjepa.config import MaskBlockConfig, MaskConfig
from vjepa.jepa.masks import MaskCollator, apply_masks, block_union, masks_to_indices

GRID = (8, 14, 14)  # 16 frames x 224 px, tubelet 2, patch 16
N = 8 * 14 * 14


def _check_pairs(out: dict, batch: int, n: int) -> None:
    for ctx, tgt in zip(out["ctx_idx"], out["tgt_idx"]):
        assert ctx.dtype == torch.long and tgt.dtype == torch.long
        assert ctx.shape[0] == tgt.shape[0] == batch
        assert ctx.shape[1] >= 1 and tgt.shape[1] >= 1
        for c, t in zip(ctx, tgt):
            assert torch.all(c[1:] > c[:-1]) and torch.all(t[1:] > t[:-1])  # sorted, unique
            assert not set(c.tolist()) & set(t.tolist())  # disjoint
            assert 0 <= int(c.min()) and int(max(c.max(), t.max())) < n


def test_multiblock_default_v_jepa_masks() -> None:
    collator = MaskCollator(MaskConfig(), GRID)
    out = collator(6, torch.Generator().manual_seed(0))
    assert len(out["ctx_idx"]) == len(out["tgt_idx"]) == 2 == len(MaskConfig().blocks)
    _check_pairs(out, 6, N)
    # Short-range (8 blocks of 15%) and long-range (2 blocks of 70%) target fractions.
    short, long = (t.shape[1] / N for t in out["tgt_idx"])
    assert 0.3 < short < 0.85 and 0.6 < long < 0.95
    assert long > short


def test_deterministic_per_generator() -> None:
    collator = MaskCollator(MaskConfig(), GRID)
    a = collator(4, torch.Generator().manual_seed(7))
    b = collator(4, torch.Generator().manual_seed(7))
    c = collator(4, torch.Generator().manual_seed(8))
    assert all(
        torch.equal(x, y) for x, y in zip(a["ctx_idx"] + a["tgt_idx"], b["ctx_idx"] + b["tgt_idx"])
    )
    assert not torch.equal(a["tgt_idx"][0], c["tgt_idx"][0]) or not torch.equal(
        a["ctx_idx"][1], c["ctx_idx"][1]
    )


def test_context_never_empty_when_blocks_cover_everything() -> None:
    cfg = MaskConfig(
        blocks=[MaskBlockConfig(num_blocks=4, spatial_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0))]
    )
    out = MaskCollator(cfg, (2, 4, 4))(3, torch.Generator().manual_seed(0))
    _check_pairs(out, 3, 32)
    assert out["ctx_idx"][0].shape[1] == 1 and out["tgt_idx"][0].shape[1] == 31


def test_equal_k_subsamples_to_batch_minimum() -> None:
    target = torch.zeros(2, 10, dtype=torch.bool)
    target[0, [1, 4, 5, 9]] = True
    target[1, [0, 2]] = True
    ctx, tgt = masks_to_indices(target, torch.Generator().manual_seed(0))
    assert tgt.shape == (2, 2) and ctx.shape == (2, 6)
    assert tgt[1].tolist() == [0, 2]  # the row at the minimum keeps all of its tokens
    assert set(tgt[0].tolist()) <= {1, 4, 5, 9}  # a subset of the row's own targets
    assert ctx[0].tolist() == [0, 2, 3, 6, 7, 8]
    assert set(ctx[1].tolist()) <= {1, 3, 4, 5, 6, 7, 8, 9}
    for row in (*tgt, *ctx):
        assert row.tolist() == sorted(row.tolist())
    # the subset is uniform, not "the first K": late tokens survive as often as early ones
    kept = torch.zeros(10)
    gen = torch.Generator().manual_seed(1)
    for _ in range(400):
        kept[masks_to_indices(target, gen)[1][0]] += 1
    assert kept[[1, 4, 5, 9]].min() > 150 and kept[[1, 4, 5, 9]].max() < 250


def test_block_union_places_blocks_inside_the_grid() -> None:
    target = block_union((2, 3, 3), 1, (4, 6, 6), 5, torch.Generator().manual_seed(0))
    assert target.shape == (5, 144) and torch.all(target.sum(1) == 18)
    grid = target.view(5, 4, 6, 6)
    for b in range(5):
        t, y, x = torch.nonzero(grid[b], as_tuple=True)
        assert (int(t.max() - t.min()), int(y.max() - y.min()), int(x.max() - x.min())) == (1, 2, 2)


@pytest.mark.parametrize("kind", ["tube", "random"])
def test_tube_and_random_ratio(kind: str) -> None:
    out = MaskCollator(MaskConfig(kind=kind, ratio=0.75), GRID)(3, torch.Generator().manual_seed(1))
    assert len(out["tgt_idx"]) == 1
    _check_pairs(out, 3, N)
    tgt = out["tgt_idx"][0]
    assert tgt.shape[1] + out["ctx_idx"][0].shape[1] == N
    assert abs(tgt.shape[1] / N - 0.75) < 0.01
    if kind == "tube":  # the same spatial positions in every frame
        spatial = tgt % (14 * 14)
        for row in spatial:
            counts = torch.bincount(row, minlength=196)
            assert set(counts.tolist()) <= {0, 8}


def test_apply_masks_gathers_rows() -> None:
    x = torch.arange(24.0).view(2, 4, 3)
    out = apply_masks(x, torch.tensor([[3, 0], [1, 2]]))
    assert out.tolist() == [[[9, 10, 11], [0, 1, 2]], [[15, 16, 17], [18, 19, 20]]]


def test_tiny_grid_rejected() -> None:
    with pytest.raises(ValueError, match="fewer than 2 tokens"):
        MaskCollator(MaskConfig(), (1, 1, 1))
