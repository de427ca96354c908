"""What a training supplies to the shared loop (vjepa.train.loop): a :class:`Task`.

How to plug in a second training (the world model does exactly this)::

    from vjepa.train.loop import run_training
    from vjepa.train.task import StepOutput, Task

    def build(cfg: Config) -> nn.Module:          # seeded from cfg.run.seed; every weight
        return MyModel(...)                      # inside a top-level child (one file each)

    def batches(cfg, rank, world, start):        # this rank's endless batch stream
        return iter(my_loader(cfg, rank=rank, world_size=world, start=start))

    def forward(cfg, model, batch, device) -> StepOutput:   # under autocast, grads enabled
        loss, terms = model(batch["frames"].to(device), batch["actions"].to(device))
        return StepOutput(loss=loss, terms={"l1": terms["l1"].detach()})

    run_training(cfg, Task(name="world", build_model=build, batches=batches, forward=forward))

Every callable gets the config the loop runs with (the one passed to ``run_training``), so a
task never closes over a config of its own.

- ``forward`` returns the scalar loss, detached scalar ``terms`` for logging (tensors: do not
  call ``.item()``, that would sync the host every step) and optionally ``features``
  ``[B, N, D]``: when given at a health step (``train.health_every``) the row gets
  ``target_std`` / ``target_rank`` (return them every step, detached: the loop keeps them
  only at health steps), unless ``health_features`` names the encoders to watch itself.
- ``update_target(model, momentum)``: called after every good optimizer step with the EMA
  momentum of that step, on the unwrapped model (under FSDP the parameters are sharded
  DTensors: use ``torch._foreach_*`` on ``parameters()`` as
  :meth:`vjepa.jepa.model.JEPA.update_target` does). Leave it None when the model has no target.
- Data position: a batch may carry ``data_state`` (``{"worker", "batch", "epoch", "consumed",
  "num_workers"}``, as vjepa.data.loader writes) and ``data_errors`` (reason -> count, this
  worker's totals). The loop keeps the last ``data_state`` of every worker and checkpoints
  ``vjepa.data.loader.loader_state(batches_taken, states)``; on resume ``batches`` gets that
  dict back as ``start`` (None for a fresh run or another world size). A stream without
  ``data_state`` still gets ``start["batches"]``: the number of batches this rank took.
- ``fsdp_units(model)``: the submodules the loop shards with FSDP2 when ``train.fsdp``
  (default: every ``Block``); nothing else changes for a task (checkpoints stay full).
- ``rows(batch)``: the samples in a batch (for ``clips_per_s``); default: the leading size of
  the first tensor in the batch. ``plot_first_batch(cfg, batch, run_dir)``: optional plot of
  the first batch (main process).
- ``param_groups(cfg, model)``: the optimizer's parameter groups when the task wants its own
  (fine-tuning: layer-wise lr decay, vjepa.train.optim.layer_decay_groups); default: every
  trainable parameter, matrices with weight decay.
- ``evaluate(cfg, unwrapped model, device) -> {metric: float}``: a periodic evaluation every
  ``eval_every(cfg)`` steps and at the last step (vjepa.train.evaluation: no grad, eval mode,
  the global RNG restored after it), written to metrics.jsonl and the trackers;
  ``train.keep_best`` keeps the checkpoint with the best value of one of its metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from vjepa.config import Config


@dataclass
class StepOutput:
    """What a task's forward returns for one micro-batch."""

    loss: Tensor  # scalar, the optimised objective (with grad)
    terms: dict[str, Tensor] = field(default_factory=dict)  # detached scalars, for logging
    features: Tensor | None = None  # [B, N, D] detached, for the health metrics (optional)


def _leading_rows(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 0


def _never(cfg: Config) -> int:
    return 0


def _blocks(model: nn.Module) -> list[nn.Module]:
    """Every transformer block (class ``Block``: encoder, target encoder, predictor)."""
    return [m for m in model.modules() if type(m).__name__ == "Block"]


@dataclass
class Task:
    """One kind of training: its model, its data and its forward (see the module docstring)."""

    name: str
    """Progress-bar label and tracker project ("pretrain", "world")."""
    build_model: Callable[[Config], nn.Module]
    """``cfg -> model`` (unprepared, on the CPU; seeded from cfg.run.seed)."""
    batches: Callable[[Config, int, int, dict | None], Iterator[dict]]
    """``(cfg, rank, world_size, start) -> endless iterator of batches`` for this rank."""
    forward: Callable[[Config, nn.Module, dict, torch.device], StepOutput]
    """``(cfg, prepared model, batch, device) -> StepOutput``; runs under autocast."""
    update_target: Callable[[nn.Module, float], None] | None = None
    """``(unwrapped model, momentum)`` after each good step (EMA); None: no target."""
    rows: Callable[[dict], int] = _leading_rows
    """Samples in a batch (clips_per_s counts them)."""
    plot_first_batch: Callable[[Config, dict, Path], None] | None = None
    """Optional ``(cfg, batch, run_dir)`` plot of the run's first batch (main process)."""
    fsdp_units: Callable[[nn.Module], list[nn.Module]] = _blocks
    """The submodules that become FSDP2 units when ``train.fsdp`` (default: every ``Block``)."""
    health_features: Callable[[Config, nn.Module, dict, torch.device], dict[str, Tensor]] | None = (
        None
    )
    """Optional ``(cfg, unwrapped model, batch, device) -> {name: [B, N, D]}`` at health steps
    (no grad): the row gets ``<name>_std``, ``<name>_rankme``, ... for each encoder named (e.g.
    ``context``, and ``target`` only while it moves). None: ``StepOutput.features`` as
    ``target_*``."""
    health: Callable[[Config, nn.Module, dict, torch.device], dict[str, float]] | None = None
    """Optional ``(cfg, unwrapped model, batch, device) -> {name: float}`` at health steps,
    after the optimizer step, merged into that metrics.jsonl row (pretraining: the slow-feature
    watch on the context encoder). Every rank calls it at the same steps."""
    param_groups: Callable[[Config, nn.Module], list[dict]] | None = None
    """Optional ``(cfg, model) -> AdamW parameter groups`` (a group may carry ``lr_scale``)."""
    evaluate: Callable[[Config, nn.Module, torch.device], dict[str, float]] | None = None
    """Optional periodic evaluation ``(cfg, unwrapped model, device) -> {metric: value}``; every
    rank calls it at the same steps (each on the whole evaluation set)."""
    eval_every: Callable[[Config], int] = _never
    """Steps between evaluations (0: never); the last step is always evaluated."""
