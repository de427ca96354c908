"""One optimizer step of the shared loop: schedules, forward and backward over the
micro-batches, ONE collective finite check, clipping, AdamW and the EMA hook.

The finite check looks at the loss and the global gradient norm; every rank takes the same
decision, so a skipped step never desynchronises DDP, and reading it back is the only host sync
of a step (loss, terms and gradient norm stay on the device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from accelerate.utils import DistributedType
from torch import Tensor

from vjepa.config import Config
from vjepa.train.optim import set_schedules
from vjepa.train.schedules import ema_at, lr_at, wd_at
from vjepa.train.state import RunState


@dataclass
class StepResult:
    """What one optimizer step reports back to the loop (numbers stay on the device)."""

    ok: bool
    loss: Tensor  # scalar, mean over the micro-batches
    terms: dict[str, Tensor]  # scalars, mean over the micro-batches
    grad_norm: Tensor  # scalar, global (all ranks) before clipping
    schedules: dict[str, float]  # lr, wd, ema used at this step
    features: Tensor | None = None  # [B, N, D] of the last micro-batch (health steps only)


def schedule_values(cfg: Config, step: int) -> dict[str, float]:
    """Learning rate, weight decay and EMA momentum of optimizer ``step``."""
    o, total = cfg.optim, cfg.train.max_steps
    return {
        "lr": lr_at(
            step,
            warmup_steps=o.warmup_steps,
            start_lr=o.start_lr,
            lr=o.lr,
            final_lr=o.final_lr,
            total_steps=total,
        ),
        "wd": wd_at(step, start=o.weight_decay, end=o.final_weight_decay, total_steps=total),
        "ema": ema_at(step, start=o.ema[0], end=o.ema[1], total_steps=total),
    }


def local_tensor(t: Tensor) -> Tensor:
    """A DTensor (FSDP2 gradient norm) as a plain replicated tensor; others unchanged."""
    full = getattr(t, "full_tensor", None)
    return full() if callable(full) else t


def _clip_grad_norm(run: RunState, max_norm: float) -> Tensor:
    """Clip the gradients to ``max_norm``; returns the global norm before clipping.

    Without FSDP, ``accelerator.clip_grad_norm_`` unscales (fp16) and then calls torch's
    ``clip_grad_norm_`` after walking the parameters twice for DTensors (~6 ms a step on the
    demo model, 2 % of its step); this does the same two calls on a cached parameter list.
    """
    acc = run.accelerator
    plain = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    if run.cfg.train.fsdp or acc.distributed_type not in plain:
        return local_tensor(acc.clip_grad_norm_(run.model.parameters(), max_norm))
    if run.trainable is None:
        run.trainable = [p for p in run.model.parameters() if p.requires_grad]
    acc.unscale_gradients()
    return torch.nn.utils.clip_grad_norm_(run.trainable, max_norm)


def optimizer_step(
    run: RunState,
    micro_batches: list[dict],
    *,
    step: int,
    poison: bool = False,
    keep_features: bool = False,
) -> StepResult:
    """One optimizer step over ``micro_batches`` (``train.grad_accum`` of them).

    ``poison`` makes the loss NaN (a test hook for the non-finite path). The skip decision is
    taken from all-reduced values, so every rank skips together; reading it back is the only
    host sync (loss, terms and gradient norm stay on the device).
    """
    cfg, acc, model, optimizer = run.cfg, run.accelerator, run.model, run.optimizer
    sched = schedule_values(cfg, step)
    set_schedules(optimizer, sched["lr"], sched["wd"])
    losses: list[Tensor] = []
    terms: dict[str, Tensor] = {}
    features = None
    n = len(micro_batches)
    for i, batch in enumerate(micro_batches):
        if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter once per step
            model.set_requires_gradient_sync(i == n - 1)
        with acc.accumulate(model):
            with acc.autocast():
                out = run.task.forward(cfg, model, batch, acc.device)
            loss = out.loss * float("nan") if poison else out.loss
            acc.backward(loss)  # divides by grad_accum; all-reduces on the last one
            losses.append(loss.detach().float())
            for name, value in out.terms.items():
                value = value.detach().float() / n
                terms[name] = terms[name] + value if name in terms else value
            if keep_features and out.features is not None:
                features = out.features.detach()
    # accelerator.sync_gradients is True now: gradients are averaged over ranks.
    loss = losses[0] if n == 1 else torch.stack(losses).mean()
    max_norm = cfg.optim.clip_grad if cfg.optim.clip_grad > 0 else math.inf  # inf: measure only
    grad_norm = _clip_grad_norm(run, max_norm).detach().float()
    # Clipping with a NaN norm writes NaN gradients, but the step is then skipped anyway.
    bad = (~torch.isfinite(loss)) | (~torch.isfinite(grad_norm))  # grad_norm is global already
    bad = acc.reduce(bad.float().reshape(1), reduction="sum")  # the loss is per rank
    ok = bool(bad.item() == 0)  # the one host sync of the step
    if ok:
        optimizer.step()
        if run.task.update_target is not None:
            run.task.update_target(run.unwrapped_model(), sched["ema"])
    optimizer.zero_grad(set_to_none=True)
    return StepResult(ok, loss, terms, grad_norm, sched, features)
