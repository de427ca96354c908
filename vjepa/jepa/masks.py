"""Pure mask generators: which tokens the context encoder sees and which the predictor predicts.

Tokens are flat indices ``n = t*(h*w) + y*w + x`` of the (t, h, w) token grid. A collator
returns, for a batch, one (context, target) pair per mask generator::

    {"ctx_idx": [Long [B, Kc_g] for each generator g], "tgt_idx": [Long [B, Kt_g] ...]}

with equal K across the batch (rows subsampled at random to the batch minimum) and indices
sorted ascending. Every random draw comes from the caller's generator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vjepa.config import MaskBlockConfig, MaskConfig

Grid = tuple[int, int, int]
_MAX_REDRAWS = 20  # then one target token is handed to the (empty) context


def apply_masks(x: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx`` [B, K] of each sample of ``x`` [B, N, D] -> [B, K, D] (one gather)."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return lo + torch.rand(1, generator=generator).item() * (hi - lo)


def sample_block_size(
    spec: MaskBlockConfig, grid: Grid, generator: torch.Generator
) -> tuple[int, int, int]:
    """One (t, h, w) block size for the whole batch, as V-JEPA draws it (scale, then aspect)."""
    gt, gh, gw = grid
    t = max(1, int(gt * _uniform(*spec.temporal_scale, generator)))
    keep = int(gh * gw * _uniform(*spec.spatial_scale, generator))
    ratio = _uniform(*spec.aspect_ratio, generator)
    h = min(max(1, round(math.sqrt(keep * ratio))), gh)
    w = min(max(1, round(math.sqrt(keep / ratio))), gw)
    return t, h, w


def block_union(
    size: tuple[int, int, int], num_blocks: int, grid: Grid, batch: int, generator: torch.Generator
) -> Tensor:
    """Union of ``num_blocks`` randomly placed blocks per sample -> Bool [batch, t*h*w]."""
    (bt, bh, bw), (gt, gh, gw) = size, grid
    shape = (batch, num_blocks, 1)
    start = torch.randint(0, gt - bt + 1, shape, generator=generator)  # [B, nb, 1]
    top = torch.randint(0, gh - bh + 1, shape, generator=generator)
    left = torch.randint(0, gw - bw + 1, shape, generator=generator)
    t, y, x = (a.reshape(1, 1, -1) for a in _coords(grid))  # each [1, 1, N]
    inside = (
        (t >= start)
        & (t < start + bt)
        & (y >= top)
        & (y < top + bh)
        & (x >= left)
        & (x < left + bw)
    )  # [B, nb, N]
    return inside.any(dim=1)  # [B, N]


def _coords(grid: Grid) -> tuple[Tensor, Tensor, Tensor]:
    gt, gh, gw = grid
    return torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij")


def multiblock_masks(
    spec: MaskBlockConfig, grid: Grid, batch: int, generator: torch.Generator
) -> Tensor:
    """Target masks Bool [batch, N] of one V-JEPA multi-block generator; context = complement.

    A sample whose blocks cover every token is redrawn (deterministically, same generator);
    after a few redraws one of its target tokens is given to the context instead.
    """
    size = sample_block_size(spec, grid, generator)
    target = block_union(size, spec.num_blocks, grid, batch, generator)  # [B, N]
    for _ in range(_MAX_REDRAWS):
        full = target.all(dim=1)  # [B]
        if not full.any():
            return target
        target[full] = block_union(size, spec.num_blocks, grid, int(full.sum()), generator)
    for row in torch.nonzero(target.all(dim=1)).flatten().tolist():
        target[row, torch.randint(0, target.shape[1], (1,), generator=generator)] = False
    return target


def masks_to_indices(target: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Bool [B, N] target masks -> (ctx_idx [B, Kc], tgt_idx [B, Kt]), sorted, equal K.

    Rows with more than the batch-minimum K keep a uniformly random subset of their tokens.
    (The reference keeps the first K in index order, which always drops the *last* frames'
    tokens and so biases the context toward early time steps.)
    """
    n = target.shape[1]
    ids = torch.arange(n).expand_as(target)  # [B, N]
    priority = torch.rand(target.shape, generator=generator)  # [B, N] in [0, 1)
    kt = int(target.sum(dim=1).min())
    kc = int((~target).sum(dim=1).min())
    # members of the wanted set sort first (priority < 1), in random order; keep K, re-sort by id
    keep_t = torch.where(target, priority, priority + 2).argsort(dim=1)[:, :kt]  # [B, Kt]
    keep_c = torch.where(target, priority + 2, priority).argsort(dim=1)[:, :kc]  # [B, Kc]
    tgt = torch.gather(ids, 1, keep_t).sort(dim=1).values  # [B, Kt]
    ctx = torch.gather(ids, 1, keep_c).sort(dim=1).values  # [B, Kc]
    return ctx, tgt


def tube_masks(ratio: float, grid: Grid, batch: int, generator: torch.Generator) -> Tensor:
    """VideoMAE tube masking: the same random spatial positions masked in every frame."""
    gt, gh, gw = grid
    k = min(max(1, int(round(ratio * gh * gw))), gh * gw - 1)
    scores = torch.rand(batch, gh * gw, generator=generator)  # [B, h*w]
    chosen = scores.argsort(dim=1)[:, :k]
    spatial = torch.zeros(batch, gh * gw, dtype=torch.bool)
    spatial.scatter_(1, chosen, True)
    return spatial[:, None, :].expand(batch, gt, gh * gw).reshape(batch, -1)  # [B, N]


def random_masks(ratio: float, grid: Grid, batch: int, generator: torch.Generator) -> Tensor:
    """Uniformly random token masking with a fixed masked count per sample."""
    n = grid[0] * grid[1] * grid[2]
    k = min(max(1, int(round(ratio * n))), n - 1)
    chosen = torch.rand(batch, n, generator=generator).argsort(dim=1)[:, :k]  # [B, k]
    target = torch.zeros(batch, n, dtype=torch.bool)
    return target.scatter_(1, chosen, True)  # [B, N]


def future_masks(ratio: float, grid: Grid, batch: int) -> Tensor:
    """Predict the future: every token of the last ``round(ratio * t)`` time steps is a target.

    The context is the earlier time steps, whole. Nothing visible shares a time step with a
    target, so a target can only be predicted from what the past says about motion (a spatial
    shortcut, such as extrapolating a periodic background within a frame, is not available).
    """
    gt, gh, gw = grid
    if gt < 2:
        raise ValueError(f"future masks need at least 2 temporal token steps, grid is {grid}")
    k = min(max(1, int(round(ratio * gt))), gt - 1)
    t = torch.arange(gt).repeat_interleave(gh * gw)  # [N] time step of each token
    return (t >= gt - k).expand(batch, -1).clone()  # [B, N]


class MaskCollator:
    """``collator(batch_size, generator) -> {"ctx_idx": [...], "tgt_idx": [...]}`` for a grid.

    multiblock: one pair per ``mask_cfg.blocks`` entry; tube / random / future: one pair.
    """

    def __init__(self, mask_cfg: MaskConfig, grid: Grid):
        if grid[0] * grid[1] * grid[2] < 2:
            raise ValueError(f"token grid {grid} has fewer than 2 tokens: nothing to mask")
        self.cfg = mask_cfg
        self.grid = tuple(grid)

    def __call__(self, batch_size: int, generator: torch.Generator) -> dict[str, list[Tensor]]:
        if self.cfg.kind == "multiblock":
            targets = [
                multiblock_masks(s, self.grid, batch_size, generator) for s in self.cfg.blocks
            ]
        elif self.cfg.kind == "tube":
            targets = [tube_masks(self.cfg.ratio, self.grid, batch_size, generator)]
        elif self.cfg.kind == "random":
            targets = [random_masks(self.cfg.ratio, self.grid, batch_size, generator)]
        elif self.cfg.kind == "future":
            targets = [future_masks(self.cfg.ratio, self.grid, batch_size)]
        else:
            raise ValueError(f"unknown mask kind {self.cfg.kind!r}")
        pairs = [masks_to_indices(t, generator) for t in targets]
        return {"ctx_idx": [c for c, _ in pairs], "tgt_idx": [t for _, t in pairs]}
