"""The training loop shared by pretraining (vjepa.train.pretrain) and world-model training (vjepa.world).

What a training supplies is a :class:`vjepa.train.task.Task` (how to write one: that module's
docstring); everything else lives here and beside it, once:

- one Accelerator (DDP / FSDP / mixed precision from ``accelerate launch``; otherwise
  ``train.mixed_precision``), gradient accumulation with ``accelerator.accumulate``;
- per step (vjepa.train.step): lr / wd / ema schedules (vjepa.train.schedules, from
  ``cfg.optim`` and ``train.max_steps``), forward under autocast, backward, ONE collective
  finite check of the loss and the global gradient norm, clipping, AdamW, then
  ``task.update_target`` (EMA) when the task has one;
- a non-finite step is skipped and counted; ``train.max_bad_steps`` in a row stop the run with
  :class:`TrainingDivergedError`, leaving the last good checkpoint as it is;
- atomic checkpoints every ``train.checkpoint_every`` steps and at the end (vjepa.train.state);
  re-running the same command resumes from the latest complete one: weights, optimizer, step,
  counters, RNG and the data position of every rank;
- ``metrics.jsonl`` (a row every ``run.log_every`` steps; per-step numbers stay on the device
  and are read back only then), tracker scalars, a tqdm bar, ``loss.png`` at the end;
- the task's periodic evaluation and ``train.keep_best`` (vjepa.train.evaluation).

- ``cfg`` is the one :class:`vjepa.config.Config`; the loop reads ``cfg.run`` (dir, seed,
  log_every, trackers), ``cfg.optim`` (AdamW, schedules, clip_grad, ema), ``cfg.train``
  (max_steps, checkpoint_every, keep_last, grad_accum, mixed_precision, health_every,
  max_bad_steps, threads, fsdp, debug_dump, keep_best) and ``cfg.data.num_workers`` (for
  ``train.threads: auto``). To train with other values, pass a copy made with
  ``dataclasses.replace`` (e.g. ``replace(cfg, train=cfg.world.train, run=...)``); the task's
  callables get that same copy.
- The optimizer is :func:`vjepa.train.optim.build_optimizer` over the trainable parameters; frozen
  parts (``requires_grad=False``: an EMA target, a frozen encoder) are saved but not trained.
- ``train.fsdp``: the loop shards ``Task.fsdp_units(model)`` and the root with FSDP2
  ``fully_shard``; nothing else changes for a task (checkpoints stay full).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedType, ProjectConfiguration
from torch import Tensor, nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from tqdm.auto import tqdm

from vjepa.config import Config, save_config, to_dict
from vjepa.errors import UsageError
from vjepa.train.checkpoint import latest_checkpoint
from vjepa.train.determinism import run_facts, set_deterministic
from vjepa.train.evaluation import evaluate, evaluation_due
from vjepa.train.faults import exit_despite_sigterm, raise_data_failure, take_run_lock
from vjepa.train.metrics import MetricsLog, health_metrics
from vjepa.train.optim import build_optimizer
from vjepa.train.plots import plot_health, plot_loss
from vjepa.train.preempt import Preemption, any_rank_flags, exit_preempted
from vjepa.train.runlock import RunLock
from vjepa.train.state import (
    Counters,
    RunState,
    data_counts,
    restore,
    save,
)
from vjepa.train.step import StepResult, local_tensor, optimizer_step
from vjepa.train.task import StepOutput, Task

__all__ = [
    "LaunchError",
    "StepOutput",
    "Task",
    "TrainingDivergedError",
    "count_step",
    "parameter_digest",
    "prepare_run",
    "resolve_threads",
    "run_training",
    "setup",
]


class LaunchError(UsageError):
    """The processes were launched inconsistently (a user error: exit code 2)."""


class TrainingDivergedError(RuntimeError):
    """Too many consecutive non-finite steps; the last good checkpoint is left intact."""


# ----------------------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------------------


def setup(cfg: Config, project: str) -> tuple[Accelerator, RunLock]:
    """The Accelerator for this run and its held run lock (vjepa.train.runlock: a second run
    on a live folder raises RunLockedError on every rank); writes ``config.yaml`` and starts
    the trackers.

    ``accelerate launch`` sets ACCELERATE_MIXED_PRECISION; then its choice wins, otherwise
    ``train.mixed_precision`` does.
    """
    run_dir = Path(cfg.run.dir)
    # Before the first parallel op: torch's OpenMP pool starts at this size.
    torch.set_num_threads(resolve_threads(cfg.train.threads, cfg.data.num_workers))
    set_deterministic(cfg.run.deterministic)
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
    try:  # before anything is written into the folder
        lock = take_run_lock(accelerator, run_dir)
    except UsageError:
        _reset_accelerate()
        raise
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    if cfg.run.trackers:
        accelerator.init_trackers(project, config=_flat_hparams(to_dict(cfg)))
    return accelerator, lock


def _reset_accelerate() -> None:
    # The Accelerate state is a process-wide singleton: reset it so a later run in the
    # same process (the demo, tests) may pick another precision or accumulation.
    AcceleratorState._reset_state()
    GradientState._reset_state()


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


def _fetch(run: RunState) -> tuple[list[dict], Exception | None]:
    """The next step's ``train.grad_accum`` batches, or the error that stopped them on this
    rank (caught: every rank must hear of it first, vjepa.train.faults.raise_data_failure).
    Not yet counted: :func:`_use_batch` does that when the step runs, so a checkpoint taken
    in between records the data position of the last step, not of these batches."""
    try:
        return [next(run.batches) for _ in range(run.cfg.train.grad_accum)], None
    except Exception as err:  # a data error, or the end of this rank's stream
        return [], err


def _use_batch(run: RunState, batch: dict) -> dict:
    run.counters.batches += 1
    state = batch.get("data_state") or {}
    worker = int(state.get("worker", 0))
    if state:
        run.data_states[worker] = state
    run.data_errors[worker] = dict(batch.get("data_errors") or {})
    run.fallbacks[worker] = dict(batch.get("decoder_fallbacks") or {})
    run.retries[worker] = dict(batch.get("data_retries") or {})
    if run.cfg.train.debug_dump and "key" in batch:
        with open(run.run_dir / f"keys-rank{run.accelerator.process_index}.txt", "a") as f:
            f.write(f"{run.counters.step} {' '.join(batch['key'])}\n")
    return batch


# ----------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------


def _record(run: RunState, result: StepResult) -> None:
    """Sums of the good steps' loss terms (on the device); schedules as of the last step."""
    if result.ok:
        run.window.add({"loss": result.loss, "grad_norm": result.grad_norm, **result.terms})
    run.schedules = result.schedules


def _log_row(run: RunState, features: dict[str, Tensor] | None) -> dict[str, Any]:
    """Collective (every rank calls it at the same steps): the metrics.jsonl row."""
    acc, c, w = run.accelerator, run.counters, run.window
    # Same names and counts on every rank: the ok/skip decision is collective.
    names = sorted(w.sums) if w.count else []
    row: dict[str, Any] = {"step": c.step}
    if names:
        local = torch.stack([w.sums[k] for k in names]) / w.count  # [K], on the device
        means = acc.reduce(local, reduction="mean").tolist()  # the window's one read-back
        row |= {k: float(v) for k, v in zip(names, means)}
    counts = data_counts(run)
    row |= {**run.schedules, **run.throughput.summary()}
    row |= {"data_errors": counts["data_errors"], "skipped_steps": c.skipped_steps}
    row["time"] = time.time()
    # Not errors, nothing was lost: remote-shard faults that a retry recovered (open, resume;
    # whole run) and samples another decoder read after the first failed (data.decoder=auto,
    # since this process started).
    row["data_retries"] = counts["data_retries"]
    row["decoder_fallbacks"] = counts["decoder_fallbacks"]
    for name, feats in (features or {}).items():  # collapse watch, per encoder
        row |= {f"{name}_{k}": v for k, v in health_metrics(feats).items()}
    w.reset()
    run.throughput.reset()
    return row


def _emit(run: RunState, row: dict[str, Any], bar: tqdm) -> None:
    run.log.write(row)
    scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
    scalars["data_errors"] = sum(row["data_errors"].values())
    scalars["data_retries"] = sum(row["data_retries"].values())
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


def _run_loop(run: RunState, nan_steps: Collection[int]) -> None:
    """The steps under one progress bar, closed however they end: an error's line (a shard
    that cannot be read, exit 2) then starts a line of its own."""
    bar = tqdm(
        total=run.cfg.train.max_steps,
        initial=run.counters.step,
        desc=run.task.name,
        dynamic_ncols=True,
        disable=not run.accelerator.is_main_process,
    )
    try:
        _steps(run, nan_steps, bar)
    finally:
        bar.close()


def _steps(run: RunState, nan_steps: Collection[int], bar: tqdm) -> None:
    cfg, acc, c = run.cfg, run.accelerator, run.counters
    run.throughput.reset()
    fetched, failure = _fetch(run)
    if any_rank_flags((failure is not None,), acc.device)[0]:
        raise_data_failure(acc, failure)
    run.throughput.data_ready()
    while c.step < cfg.train.max_steps:
        micro = [_use_batch(run, b) for b in fetched]
        if not run.plotted:
            run.plotted = True
            if acc.is_main_process and run.task.plot_first_batch is not None:
                run.task.plot_first_batch(cfg, micro[0], run.run_dir)
        step = c.step
        health = (step + 1) % cfg.train.health_every == 0
        result = optimizer_step(
            run, micro, step=step, poison=step in nan_steps, keep_features=health
        )
        # every rank ran the same number of rows (equal batches): local count x world size
        run.throughput.step_done(sum(run.task.rows(b) for b in micro) * acc.num_processes)
        count_step(run, result, step)
        bar.update(1)
        if c.step % cfg.run.log_every == 0 or health:
            feats = _health_features(run, micro[-1], result) if health else None
            row = _log_row(run, feats)
            # the slow-feature watch (issue 27); not under FSDP2 (see _health_features)
            if health and run.task.health is not None and not cfg.train.fsdp:
                row |= run.task.health(cfg, run.unwrapped_model(), micro[-1], acc.device)
            _emit(run, row, bar)
        if evaluation_due(run):  # the task's evaluation; train.keep_best
            evaluate(run)
        # The next step's batches before the step's one collective, which asks both: SIGTERM /
        # SIGUSR1 on any rank (this step is done: checkpoint it, exit 75) and a rank whose data
        # stopped (every rank raises its one line; none waits in the next step's all-reduce).
        # A rank that got the signal itself does not wait for more data (a slow shard).
        requested = run.preempt is not None and run.preempt.requested()
        more = c.step < cfg.train.max_steps and not requested
        fetched, failure = _fetch(run) if more else ([], None)
        run.throughput.data_ready()
        preempted, failed = any_rank_flags((requested, failure is not None), acc.device)
        if preempted or c.step % cfg.train.checkpoint_every == 0 or c.step == cfg.train.max_steps:
            save(run)
        if preempted:
            bar.close()
            _exit_preempted(run)
        if failed:
            raise_data_failure(acc, failure)


def _health_features(run: RunState, batch: dict, result: StepResult) -> dict[str, Tensor]:
    """{encoder name: [B, N, D]} of a health step: the task's own, else its forward's target.

    Under FSDP2 the submodules' parameters are sharded DTensors that only the wrapped root's
    forward gathers, so a task's own encoder passes are skipped there (the forward's features).
    """
    if run.task.health_features is None or run.cfg.train.fsdp:
        return {} if result.features is None else {"target": result.features}
    with torch.no_grad():
        return run.task.health_features(
            run.cfg, run.unwrapped_model(), batch, run.accelerator.device
        )


def _exit_preempted(run: RunState) -> None:
    received = run.preempt.received if run.preempt is not None else None
    run.log.write({"event": "preempted", "step": run.counters.step})
    exit_preempted(
        received.name if received else "peer", run.counters.step, str(run.last_checkpoint)
    )


def count_step(run: RunState, result: StepResult, step: int) -> None:
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


def _finish(run: RunState) -> None:
    """loss.png and health.png (main process) and the per-rank debug dump."""
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
        tensor = local_tensor(tensor.detach())  # FSDP2: the full parameter, the same on every rank
        h.update(tensor.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_training(cfg: Config, task: Task, *, nan_steps: Collection[int] = ()) -> Path:
    """Run (or resume) ``task`` into ``cfg.run.dir``; returns the run folder.

    ``nan_steps``: steps whose loss is replaced by NaN (test hook for the skip / stop path).
    """
    accelerator, lock = setup(cfg, task.name)
    try:
        with lock, Preemption() as preempt:
            return _run(cfg, task, accelerator, nan_steps, preempt)
    except UsageError:
        if accelerator.num_processes > 1:  # every rank raises it (agreed): exit 2, not -15
            exit_despite_sigterm()
        raise
    finally:
        accelerator.end_training()  # trackers flushed and closed, also after an error
        _reset_accelerate()


def prepare_run(cfg: Config, task: Task, accelerator: Accelerator) -> RunState:
    """The task's model and AdamW, prepared by ``accelerator``, in a fresh run state.

    ``run_training`` starts from this; benchmarks (tools/bench_reference.py) call
    :func:`vjepa.train.step.optimizer_step` on it directly.
    """
    run_dir = Path(cfg.run.dir)
    model = task.build_model(cfg)
    groups = task.param_groups  # None: the default groups
    if cfg.train.fsdp:
        model = _fully_shard(model, task, accelerator)  # before AdamW: it holds the DTensors
        own = groups(cfg, model) if groups else None
        optimizer = accelerator.prepare(build_optimizer(model, cfg.optim, groups=own))
    else:
        fused = accelerator.device.type == "cpu"  # measured faster there (see build_optimizer)
        own = groups(cfg, model) if groups else None
        optimizer = build_optimizer(model, cfg.optim, fused, groups=own)
        model, optimizer = accelerator.prepare(model, optimizer)
    log = MetricsLog(run_dir / "metrics.jsonl", enabled=accelerator.is_main_process)
    return RunState(cfg, task, accelerator, model, optimizer, run_dir, Counters(), log)


def _fully_shard(model: nn.Module, task: Task, accelerator: Accelerator) -> nn.Module:
    """FSDP2 in place: each of ``task.fsdp_units(model)`` one unit, then the root.

    Done here rather than by Accelerate's FSDP plugin because that one refuses CPUs (it turns
    into plain multi-CPU DDP), and one code path is what the CPU test checks. The model is not
    passed to ``accelerator.prepare`` (no DDP wrapper over DTensors).
    """
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


def _run(
    cfg: Config,
    task: Task,
    accelerator: Accelerator,
    nan_steps: Collection[int],
    preempt: Preemption | None = None,
) -> Path:
    run_dir = Path(cfg.run.dir)
    run = prepare_run(cfg, task, accelerator)
    run.preempt = preempt
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
            **run_facts(cfg),  # decoder, threads, workers: what else decides the numbers
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
