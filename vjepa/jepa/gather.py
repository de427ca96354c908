"""Anti-collapse statistics over the GLOBAL batch: gather the features of every rank.

``batch_variance_loss``, ``batch_covariance_loss`` and ``sigreg_loss`` (vjepa.jepa.losses)
take statistics across the clips of a batch. Called on one rank's features they see only its
local batch: at 8 GPUs x 24 clips SIGReg tests 24 samples where the user expects 192. Call
them on ``gather_batch(x)`` instead.

Gradient convention (what the 2-process test checks): every rank computes the SAME loss
value, that of the whole global batch. The backward sums, over ranks, the gradients each
rank's loss sends to the gathered batch (an all-reduce) and keeps this rank's rows, so rank
r's input gets ``world_size * dL/dx_r``. DDP then AVERAGES the
parameter gradients over ranks, which divides that factor away: the parameters receive
exactly the gradient of one process computing the loss on the concatenated batch. Add the
term to the local objective unchanged (no manual scaling); with ``reg_scope: local``
(no gather) each rank's term is the local-batch statistic instead.

Why not ``torch.distributed.nn.functional.all_gather``: on gloo (torch 2.14.1) its backward,
a reduce-scatter emulated with an all-to-all, returns wrong gradients for the covariance and
SIGReg terms (max error 0.018 and 0.081 against gradients of size 0.015 and 0.074 in the
2-process test; the variance term came out exact). The all-reduce below is exact on every
backend; it moves about twice the bytes of a reduce-scatter in the backward.

Cost: the forward moves ``world_size`` times the local features to every rank. Gather what
the statistic needs (pooled [B, D] features, or the token features it is computed on) in
the loss dtype.

Requirements: every rank calls it at the same point (a collective) with the same shape
(equal per-rank batch sizes, as the loaders give); SIGReg's directions must be drawn from
a generator seeded identically on every rank (seed and step, not rank).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_batch(x: Tensor) -> Tensor:
    """All ranks' ``x`` concatenated on dim 0, in rank order, differentiable; ``x`` when alone.

    ``x`` [b, ...] on each rank -> [world_size * b, ...].
    """
    if not is_distributed():
        return x
    return _GatherBatch.apply(x)  # [R * b, ...]


class _GatherBatch(torch.autograd.Function):
    """all_gather forward; backward = all-reduce (sum) of the gathered gradient, own rows."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        x = x.contiguous()  # [b, ...]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts, dim=0)  # [R * b, ...]

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()  # [R * b, ...]; all_reduce works in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]  # [b, ...]
