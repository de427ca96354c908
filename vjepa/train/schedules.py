"""Per-step schedules: pure functions of the optimizer step.

Being pure (no state, no scheduler objects) is what makes resume trivial: the loop restores the
step counter and every schedule continues exactly where it left off.

- learning rate: linear warmup ``start_lr -> lr`` over ``warmup_steps``, then a half cosine
  ``lr -> final_lr`` reaching ``final_lr`` at ``total_steps`` (pretraining and the probe heads:
  they differ only in where the warmup counts from, see ``warmup_inclusive``);
- weight decay: half cosine ``start -> end`` over ``total_steps`` (V-JEPA raises it);
- EMA momentum of the target encoder: linear ``start -> end`` over ``total_steps``.

Steps past ``total_steps`` hold the final value; negative steps hold the first.
"""

from __future__ import annotations

import math


def _progress(step: int, total_steps: int) -> float:
    """Fraction of the run done, clamped to [0, 1]."""
    if total_steps <= 0:
        return 1.0
    return min(max(step / total_steps, 0.0), 1.0)


def _cosine(start: float, end: float, progress: float) -> float:
    """Half cosine from ``start`` (progress 0) to ``end`` (progress 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(
    step: int,
    *,
    warmup_steps: int,
    start_lr: float,
    lr: float,
    final_lr: float,
    total_steps: int,
    warmup_inclusive: bool = False,
) -> float:
    """Learning rate at optimizer ``step``: linear warmup then cosine decay.

    ``warmup_inclusive``: warmup step ``s`` trains at ``(s + 1) / warmup_steps`` of the way, so
    the first step already moves and the last warmup step reaches ``lr`` (the probe heads, as
    V-JEPA's evaluation does); otherwise step ``s`` at ``s / warmup_steps``, step 0 at
    ``start_lr`` (pretraining).
    """
    if step < warmup_steps:
        done = max(step, 0) + (1 if warmup_inclusive else 0)
        return start_lr + (lr - start_lr) * done / warmup_steps
    return _cosine(lr, final_lr, _progress(step - warmup_steps, total_steps - warmup_steps))


def wd_at(step: int, *, start: float, end: float, total_steps: int) -> float:
    """Weight decay at optimizer ``step``: cosine from ``start`` to ``end``."""
    return _cosine(start, end, _progress(step, total_steps))


def ema_at(step: int, *, start: float, end: float, total_steps: int) -> float:
    """Target-encoder EMA momentum at optimizer ``step``: linear from ``start`` to ``end``."""
    return start + (end - start) * _progress(step, total_steps)
