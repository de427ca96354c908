"""The training loop shared by pretraining (vjepa.train) and world-model training (vjepa.world).

What a training supplies is a :class:`Task`; everything else lives here, once:

- one Accelerator (DDP / FSDP / mixed precision from ``accelerate launch``; otherwise
  ``train.mixed_precision``), gradient accumulation with ``accelerator.accumulate``;
- per step: lr / wd / ema schedules (vjepa.schedules, from ``cfg.optim`` and
  ``train.max_steps``), forward under autocast, backward, ONE collective finite check of the
  loss and the global gradient norm (every rank takes the same decision, so a skipped step
  never desynchronises DDP; it is the only host sync of a step), clipping, AdamW, then
  ``task.update_target`` (EMA) when the task has one;
- a non-finite step is skipped and counted; ``train.max_bad_steps`` in a row stop the run with
  :class:`TrainingDivergedError`, leaving the last good checkpoint as it is;
- atomic checkpoints every ``train.checkpoint_every`` steps and at the end
  (vjepa.checkpoint.save_training_state: one safetensors file per top-level child module of
  the model); re-running the same command resumes from the latest complete one: weights,
  optimizer, step, counters, RNG and the data position of every rank;
- ``metrics.jsonl`` (a row every ``run.log_every`` steps; per-step numbers stay on the device
  and are read back only then), tracker scalars, a tqdm bar, ``loss.png`` at the end.

How to plug in a second training (the world model does exactly this)::

    from vjepa.loop import StepOutput, Task, run_training

    def build(cfg: Config) -> nn.Module:          # seeded from cfg.run.seed; every weight
        return MyModel(...)                      # inside a top-level child (one file each)

    def batches(cfg, rank, world, start):        # this rank's endless batch stream
        return iter(my_loader(cfg, rank=rank, world_size=world, start=start))

    def forward(model, batch, device) -> StepOutput:   # runs under autocast, grads enabled
        loss, terms = model(batch["frames"].to(device), batch["actions"].to(device))
        return StepOutput(loss=loss, terms={"l1": terms["l1"].detach()})

    run_training(cfg, Task(name="world", build_model=build, batches=batches, forward=forward))

- ``cfg`` is the one :class:`vjepa.config.Config`; the loop reads ``cfg.run`` (dir, seed,
  log_every, trackers), ``cfg.optim`` (AdamW, schedules, clip_grad, ema), ``cfg.train``
  (max_steps, checkpoint_every, keep_last, grad_accum, mixed_precision, health_every,
  max_bad_steps, threads, fsdp, debug_dump) and ``cfg.data.num_workers`` (for ``train.threads:
  auto``). To train with other values, pass a copy made with
  ``dataclasses.replace`` (e.g. ``replace(cfg, train=cfg.world.train, run=...)``).
- The optimizer is :func:`vjepa.optim.build_optimizer` over the trainable parameters; frozen
  parts (``requires_grad=False``: an EMA target, a frozen encoder) are saved but not trained.
- ``forward`` returns the scalar loss, detached scalar ``terms`` for logging (tensors: do not
  call ``.item()``, that would sync the host every step) and optionally ``features``
  ``[B, N, D]``: when given at a health step (``train.health_every``) the row gets
  ``target_std`` / ``target_rank`` (return them every step, detached: the loop keeps them
  only at health steps).
- ``update_target(model, momentum)``: called after every good optimizer step with the EMA
  momentum of that step, on the unwrapped model (under FSDP the parameters are sharded
  DTensors: use ``torch._foreach_*`` on ``parameters()`` as :meth:`vjepa.jepa.JEPA.update_target`
  does). Leave it None when the model has no target.
- Data position: a batch may carry ``data_state`` (``{"worker", "batch", "epoch", "consumed",
  "num_workers"}``, as vjepa.data.pipeline writes) and ``data_errors`` (reason -> count, this
  worker's totals). The loop keeps the last ``data_state`` of every worker and checkpoints
  ``vjepa.data.pipeline.loader_state(batches_taken, states)``; on resume ``batches`` gets that
  dict back as ``start`` (None for a fresh run or another world size). A stream without
  ``data_state`` still gets ``start["batches"]``: the number of batches this rank took.
- ``train.fsdp``: the loop shards ``Task.fsdp_units(model)`` (default: every ``Block``) and
  the root with FSDP2 ``fully_shard``; nothing else changes for a task (checkpoints stay full).
- ``rows(batch)``: the samples in a batch (for ``clips_per_s``); default: the leading size of
  the first tensor in the batch. ``plot_first_batch(batch, run_dir)``: optional plot of the
  first batch (main process).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedType, ProjectConfiguration, gather_object
from torch import Tensor, nn
from tqdm.auto import tqdm

from vjepa.checkpoint import latest_checkpoint, restore_training_state, save_training_state
from vjepa.config import Config, save_config, to_dict
from vjepa.metrics import MetricsLog, Throughput
from vjepa.optim import build_optimizer, set_schedules
from vjepa.schedules import ema_at, lr_at, wd_at


class LaunchError(ValueError):
    """The processes were launched inconsistently (a user error: exit code 2)."""


class TrainingDivergedError(RuntimeError):
    """Too many consecutive non-finite steps; the last good checkpoint is left intact."""


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
    forward: Callable[[nn.Module, dict, torch.device], StepOutput]
    """``(prepared model, batch, device) -> StepOutput``; runs under autocast."""
    update_target: Callable[[nn.Module, float], None] | None = None
    """``(unwrapped model, momentum)`` after each good step (EMA); None: no target."""
    rows: Callable[[dict], int] = _leading_rows
    """Samples in a batch (clips_per_s counts them)."""
    plot_first_batch: Callable[[dict, Path], None] | None = None
    """Optional plot of the run's first batch into the run folder (main process)."""
    fsdp_units: Callable[[nn.Module], list[nn.Module]] = _blocks
    """The submodules that become FSDP2 units when ``train.fsdp`` (default: every ``Block``)."""
    health: Callable[[nn.Module, dict, torch.device], dict[str, float]] | None = None
    """Optional ``(unwrapped model, batch, device) -> {name: float}`` at health steps, after the
    optimizer step, merged into that metrics.jsonl row (pretraining: the slow-feature watch on
    the context encoder). Every rank calls it at the same steps."""


@dataclass
class Counters:
    """Everything besides weights and optimizer that a resume must restore (plain values)."""

    step: int = 0
    """Optimizer steps attempted (good + skipped): the schedules follow it."""
    skipped_steps: int = 0
    """Steps skipped for a non-finite loss or gradient, whole run."""
    bad_in_row: int = 0
    """Current run of consecutive skipped steps."""
    batches: int = 0
    """Micro-batches this rank has taken from its loader (its exact data position)."""
    data_errors_before_resume: dict[str, int] = field(default_factory=dict)
    """Skipped samples by reason, all ranks, counted before the last resume (the loader's own
    counts restart at zero in a new process)."""


@dataclass
class StepResult:
    """What one optimizer step reports back to the loop (numbers stay on the device)."""

    ok: bool
    loss: Tensor  # scalar, mean over the micro-batches
    terms: dict[str, Tensor]  # scalars, mean over the micro-batches
    grad_norm: Tensor  # scalar, global (all ranks) before clipping
    schedules: dict[str, float]  # lr, wd, ema used at this step
    features: Tensor | None = None  # [B, N, D] of the last micro-batch (health steps only)


@dataclass
class _Window:
    """Sums of the good steps' numbers since the last log row, kept on the device."""

    sums: dict[str, Tensor] = field(default_factory=dict)
    count: int = 0

    def add(self, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.count += 1

    def reset(self) -> None:
        self.sums, self.count = {}, 0


@dataclass
class _Run:
    """The live objects of a run, passed between the loop's small functions."""

    cfg: Config
    task: Task
    accelerator: Accelerator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    run_dir: Path
    counters: Counters
    log: MetricsLog
    batches: Iterator[dict] | None = None
    data_states: dict[int, dict] = field(default_factory=dict)  # worker -> last data_state
    data_errors: dict[int, dict] = field(default_factory=dict)  # worker -> cumulative counts
    fallbacks: dict[int, dict] = field(default_factory=dict)  # worker -> decoder fallbacks
    window: _Window = field(default_factory=_Window)  # good steps' numbers, this log window
    schedules: dict[str, float] = field(default_factory=dict)  # lr, wd, ema of the last step
    throughput: Throughput = field(default_factory=Throughput)
    plotted: bool = False
    last_checkpoint: Path | None = None
    # Cached for train_step: unwrap_model walks every module (~3 ms a step on the demo).
    unwrapped: nn.Module | None = None
    trainable: list[Tensor] | None = None  # the parameters that get gradients


# ----------------------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------------------


def setup(cfg: Config, project: str) -> Accelerator:
    """The Accelerator for this run; writes ``config.yaml`` and starts the trackers.

    ``accelerate launch`` sets ACCELERATE_MIXED_PRECISION; then its choice wins, otherwise
    ``train.mixed_precision`` does.
    """
    run_dir = Path(cfg.run.dir)
    # Before the first parallel op: torch's OpenMP pool starts at this size.
    torch.set_num_threads(resolve_threads(cfg.train.threads, cfg.data.num_workers))
    launched = "ACCELERATE_MIXED_PRECISION" in os.environ
    accelerator = Accelerator(
        mixed_precision=None if launched else cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.grad_accum,
        log_with=list(cfg.run.trackers) or None,
        project_config=ProjectConfiguration(
            project_dir=str(run_dir), logging_dir=str(run_dir / "logs")
        ),
    )
    launched_world = int(os.environ.get("WORLD_SIZE", "1"))
    if launched_world != accelerator.num_processes:
        # e.g. `accelerate launch --num_processes 2` on a CPU without ACCELERATE_USE_CPU=1:
        # independent single-process runs that would overwrite each other's run folder.
        raise LaunchError(
            f"launched {launched_world} processes but Accelerate sees a world of "
            f"{accelerator.num_processes}; on a CPU set ACCELERATE_USE_CPU=1 and launch with "
            "--multi_gpu (see configs/accelerate/cpu_2proc.yaml)"
        )
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    if cfg.run.trackers:
        accelerator.init_trackers(project, config=_flat_hparams(to_dict(cfg)))
    return accelerator


def resolve_threads(setting: str | int, num_workers: int) -> int:
    """Intra-op threads for ``train.threads`` (see its docstring): an int is taken as is."""
    if setting != "auto":
        return int(setting)  # the config checked it is >= 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local_world = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return max(1, (cores or 1) // local_world - max(num_workers, 0))


def _flat_hparams(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> flat {a.b: scalar} (TensorBoard hparams take scalars only)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat_hparams(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str, bool)):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------


def _next_batch(run: _Run) -> dict:
    batch = next(run.batches)
    run.counters.batches += 1
    state = batch.get("data_state") or {}
    worker = int(state.get("worker", 0))
    if state:
        run.data_states[worker] = state
    run.data_errors[worker] = dict(batch.get("data_errors") or {})
    run.fallbacks[worker] = dict(batch.get("decoder_fallbacks") or {})
    if run.cfg.train.debug_dump and "key" in batch:
        with open(run.run_dir / f"keys-rank{run.accelerator.process_index}.txt", "a") as f:
            f.write(f"{run.counters.step} {' '.join(batch['key'])}\n")
    return batch


def _data_position(run: _Run) -> dict:
    from vjepa.data.pipeline import loader_state

    return loader_state(run.counters.batches, run.data_states)


# ----------------------------------------------------------------------------------------
# One optimizer step
# ----------------------------------------------------------------------------------------


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


def _local(t: Tensor) -> Tensor:
    """A DTensor (FSDP2 gradient norm) as a plain replicated tensor; others unchanged."""
    full = getattr(t, "full_tensor", None)
    return full() if callable(full) else t


def _unwrapped(run: _Run) -> nn.Module:
    """``accelerator.unwrap_model(run.model)``, computed once per run."""
    if run.unwrapped is None:
        run.unwrapped = run.accelerator.unwrap_model(run.model)
    return run.unwrapped


def _clip_grad_norm(run: _Run, max_norm: float) -> Tensor:
    """Clip the gradients to ``max_norm``; returns the global norm before clipping.

    Without FSDP, ``accelerator.clip_grad_norm_`` unscales (fp16) and then calls torch's
    ``clip_grad_norm_`` after walking the parameters twice for DTensors (~6 ms a step on the
    demo model, 2 % of its step); this does the same two calls on a cached parameter list.
    """
    acc = run.accelerator
    plain = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    if run.cfg.train.fsdp or acc.distributed_type not in plain:
        return _local(acc.clip_grad_norm_(run.model.parameters(), max_norm))
    if run.trainable is None:
        run.trainable = [p for p in run.model.parameters() if p.requires_grad]
    acc.unscale_gradients()
    return torch.nn.utils.clip_grad_norm_(run.trainable, max_norm)


def train_step(
    run: _Run,
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
                out = run.task.forward(model, batch, acc.device)
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
            run.task.update_target(_unwrapped(run), sched["ema"])
    optimizer.zero_grad(set_to_none=True)
    return StepResult(ok, loss, terms, grad_norm, sched, features)


# ----------------------------------------------------------------------------------------
# Checkpoints and resume
# ----------------------------------------------------------------------------------------


def _summed_over_ranks(per_worker: dict[int, dict], start: dict[str, int]) -> dict[str, int]:
    """``start`` plus every rank's per-worker counts, by reason (collective)."""
    totals = dict(start)
    for rank_counts in gather_object([per_worker]):
        for counts in rank_counts.values():
            for reason, n in counts.items():
                totals[reason] = totals.get(reason, 0) + int(n)
    return totals


def _data_error_totals(run: _Run) -> dict[str, int]:
    """Skipped samples by reason over the whole run and all ranks (collective)."""
    return _summed_over_ranks(run.data_errors, run.counters.data_errors_before_resume)


def save(run: _Run) -> None:
    """Checkpoint the run (collective: every rank calls it; rank 0 writes, all wait)."""
    acc, c = run.accelerator, run.counters
    counters = asdict(c) | {"data_errors_before_resume": _data_error_totals(run)}
    folder = save_training_state(
        acc,
        acc.unwrap_model(run.model),
        run.optimizer,
        run_dir=run.run_dir,
        step=c.step,
        per_rank={"data": _data_position(run), "batches": c.batches},
        extra={"counters": counters, "config": to_dict(run.cfg)},
        keep_last=run.cfg.train.keep_last,
    )
    run.last_checkpoint = folder or run.run_dir / "checkpoints" / f"step-{c.step:08d}"


def restore(run: _Run, path: Path) -> dict | None:
    """Load a checkpoint into the run on every rank; returns this rank's loader ``start``."""
    ckpt, mine = restore_training_state(
        run.accelerator, run.accelerator.unwrap_model(run.model), run.optimizer, path
    )
    run.counters = Counters(**ckpt["counters"])
    run.last_checkpoint = path
    if mine is None:  # another world size: the data position cannot map rank to rank
        run.counters.batches = 0
        return None
    run.counters.batches = int(mine["batches"])
    return mine["data"]


# ----------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------


def _record(run: _Run, result: StepResult) -> None:
    """Sums of the good steps' loss terms (on the device); schedules as of the last step."""
    if result.ok:
        run.window.add({"loss": result.loss, "grad_norm": result.grad_norm, **result.terms})
    run.schedules = result.schedules


def _log_row(run: _Run, features: Tensor | None) -> dict[str, Any]:
    """Collective (every rank calls it at the same steps): the metrics.jsonl row."""
    acc, c, w = run.accelerator, run.counters, run.window
    # Same names and counts on every rank: the ok/skip decision is collective.
    names = sorted(w.sums) if w.count else []
    row: dict[str, Any] = {"step": c.step}
    if names:
        local = torch.stack([w.sums[k] for k in names]) / w.count  # [K], on the device
        means = acc.reduce(local, reduction="mean").tolist()  # the window's one read-back
        row |= {k: float(v) for k, v in zip(names, means)}
    errors = _data_error_totals(run)
    row |= {**run.schedules, **run.throughput.summary()}
    row |= {"data_errors": errors, "skipped_steps": c.skipped_steps, "time": time.time()}
    # Samples another decoder read after the first failed (data.decoder=auto), since this process
    # started: not errors, nothing was lost.
    row["decoder_fallbacks"] = _summed_over_ranks(run.fallbacks, {})
    if features is not None:
        row |= _health(features)
    w.reset()
    run.throughput.reset()
    return row


def _health(features: Tensor) -> dict[str, float]:
    """Collapse watch on the task's features [B, N, D]: see ``vjepa.metrics.health_metrics``."""
    from vjepa.metrics import health_metrics

    return {f"target_{k}": v for k, v in health_metrics(features).items()}


def _emit(run: _Run, row: dict[str, Any], bar: tqdm) -> None:
    run.log.write(row)
    scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
    scalars["data_errors"] = sum(row["data_errors"].values())
    run.accelerator.log(scalars, step=row["step"])
    bar.set_postfix(
        loss=f"{row.get('loss', math.nan):.4f}",
        lr=f"{row['lr']:.2e}",
        clips_s=f"{row['clips_per_s']:.1f}",
        wait=f"{row['data_wait_frac']:.0%}",
        refresh=False,
    )


# ----------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------


def _run_loop(run: _Run, nan_steps: Collection[int]) -> None:
    cfg, acc, c = run.cfg, run.accelerator, run.counters
    bar = tqdm(
        total=cfg.train.max_steps,
        initial=c.step,
        desc=run.task.name,
        dynamic_ncols=True,
        disable=not acc.is_main_process,
    )
    run.throughput.reset()
    while c.step < cfg.train.max_steps:
        micro = [_next_batch(run) for _ in range(cfg.train.grad_accum)]
        run.throughput.data_ready()
        if not run.plotted:
            run.plotted = True
            if acc.is_main_process and run.task.plot_first_batch is not None:
                run.task.plot_first_batch(micro[0], run.run_dir)
        step = c.step
        health = (step + 1) % cfg.train.health_every == 0
        result = train_step(run, micro, step=step, poison=step in nan_steps, keep_features=health)
        # every rank ran the same number of rows (equal batches): local count x world size
        run.throughput.step_done(sum(run.task.rows(b) for b in micro) * acc.num_processes)
        _after_step(run, result, step)
        bar.update(1)
        if c.step % cfg.run.log_every == 0 or health:
            row = _log_row(run, result.features if health else None)
            if health and run.task.health is not None:
                row |= run.task.health(_unwrapped(run), micro[-1], acc.device)
            _emit(run, row, bar)
        if c.step % cfg.train.checkpoint_every == 0 or c.step == cfg.train.max_steps:
            save(run)
    bar.close()


def _after_step(run: _Run, result: StepResult, step: int) -> None:
    """Count the step; raise after train.max_bad_steps non-finite steps in a row."""
    cfg, c = run.cfg, run.counters
    c.step = step + 1
    _record(run, result)
    if result.ok:
        c.bad_in_row = 0
        return
    c.skipped_steps += 1
    c.bad_in_row += 1
    run.accelerator.print(
        f"step {step}: non-finite loss ({float(result.loss)}) or gradient norm "
        f"({float(result.grad_norm)}); step skipped ({c.bad_in_row} in a row, "
        f"{c.skipped_steps} in total)"
    )
    if c.bad_in_row >= cfg.train.max_bad_steps:
        run.log.write({"event": "diverged", "step": c.step, "skipped_steps": c.skipped_steps})
        last = run.last_checkpoint or "none (no checkpoint was written yet)"
        raise TrainingDivergedError(
            f"{c.bad_in_row} consecutive steps (up to step {step}) had a non-finite loss or "
            f"gradient (train.max_bad_steps={cfg.train.max_bad_steps}); stopped without saving. "
            f"Last good checkpoint: {last}. Lower optim.lr or check the data, then re-run to "
            "resume from it."
        )


def _finish(run: _Run) -> None:
    """loss.png and health.png (main process) and the per-rank debug dump."""
    from vjepa.plots import plot_health, plot_loss

    acc = run.accelerator
    if acc.is_main_process:
        plot_loss(run.run_dir / "metrics.jsonl", run.run_dir / "loss.png")
        plot_health(run.run_dir / "metrics.jsonl", run.run_dir / "health.png")
    if run.cfg.train.debug_dump:
        digest = parameter_digest(acc.unwrap_model(run.model))
        (run.run_dir / f"params-rank{acc.process_index}.txt").write_text(digest + "\n")


def parameter_digest(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, bytes): equal digests = equal models."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        tensor = _local(tensor.detach())  # FSDP2: the full parameter, the same on every rank
        h.update(tensor.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_training(cfg: Config, task: Task, *, nan_steps: Collection[int] = ()) -> Path:
    """Run (or resume) ``task`` into ``cfg.run.dir``; returns the run folder.

    ``nan_steps``: steps whose loss is replaced by NaN (test hook for the skip / stop path).
    """
    accelerator = setup(cfg, task.name)
    try:
        return _train(cfg, task, accelerator, nan_steps)
    finally:
        accelerator.end_training()  # trackers flushed and closed, also after an error
        # The Accelerate state is a process-wide singleton: reset it so a later run in the
        # same process (the demo, tests) may pick another precision or accumulation.
        AcceleratorState._reset_state()
        GradientState._reset_state()


def prepare_run(cfg: Config, task: Task, accelerator: Accelerator) -> _Run:
    """The task's model and AdamW, prepared by ``accelerator``, in a fresh run state.

    ``run_training`` starts from this; benchmarks (tools/bench_reference.py) call
    :func:`train_step` on it directly.
    """
    run_dir = Path(cfg.run.dir)
    model = task.build_model(cfg)
    if cfg.train.fsdp:
        model = _fully_shard(model, task, accelerator)  # before AdamW: it holds the DTensors
        optimizer = accelerator.prepare(build_optimizer(model, cfg.optim))
    else:
        fused = accelerator.device.type == "cpu"  # measured faster there (see build_optimizer)
        model, optimizer = accelerator.prepare(model, build_optimizer(model, cfg.optim, fused))
    return _Run(
        cfg=cfg,
        task=task,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        run_dir=run_dir,
        counters=Counters(),
        log=MetricsLog(run_dir / "metrics.jsonl", enabled=accelerator.is_main_process),
    )


def _fully_shard(model: nn.Module, task: Task, accelerator: Accelerator) -> nn.Module:
    """FSDP2 in place: each of ``task.fsdp_units(model)`` one unit, then the root.

    Done here rather than by Accelerate's FSDP plugin because that one refuses CPUs (it turns
    into plain multi-CPU DDP), and one code path is what the CPU test checks. The model is not
    passed to ``accelerator.prepare`` (no DDP wrapper over DTensors).
    """
    from accelerate.utils import DistributedType
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if accelerator.distributed_type == DistributedType.FSDP:
        raise LaunchError(
            "train.fsdp=true shards the model itself: launch with --multi_gpu (or "
            "configs/accelerate/fsdp_8.yaml), not with Accelerate's FSDP plugin"
        )
    if accelerator.num_processes < 2:
        raise LaunchError("train.fsdp=true needs at least 2 processes (accelerate launch)")
    model.to(accelerator.device)
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    for unit in task.fsdp_units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _train(cfg: Config, task: Task, accelerator: Accelerator, nan_steps: Collection[int]) -> Path:
    run_dir = Path(cfg.run.dir)
    run = prepare_run(cfg, task, accelerator)
    resume = latest_checkpoint(run_dir)
    start = restore(run, resume) if resume is not None else None
    event = {"event": "resume", "checkpoint": str(resume)} if resume else {"event": "start"}
    params = list(accelerator.unwrap_model(run.model).parameters())
    run.log.write(
        {
            **event,
            "step": run.counters.step,
            "world_size": accelerator.num_processes,
            "distributed": accelerator.distributed_type.value,  # NO, MULTI_CPU, FSDP, ...
            "params": len(params),
            "sharded_params": sum(hasattr(p, "full_tensor") for p in params),  # DTensors
        }
    )
    accelerator.print(
        f"{event['event']} at step {run.counters.step} in {run_dir} "
        f"(world size {accelerator.num_processes})"
    )
    if run.counters.step < cfg.train.max_steps:
        run.batches = task.batches(cfg, accelerator.process_index, accelerator.num_processes, start)
        _run_loop(run, nan_steps)
    _finish(run)
    return run_dir
