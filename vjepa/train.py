"""V-JEPA pretraining with Accelerate: the loop, one step, resume, logging.

``pretrain(cfg)`` runs (or resumes) a run in ``cfg.run.dir``:

- one Accelerator (DDP / FSDP / mixed precision come from ``accelerate launch``; otherwise
  ``train.mixed_precision``), gradient accumulation with ``accelerator.accumulate``;
- per step: lr / wd schedules, forward under autocast, backward, a collective finite check of
  the loss and the global gradient norm (all ranks take the same decision, so a skipped step
  never desynchronises DDP), clipping, AdamW, EMA of the target encoder;
- a non-finite step is skipped and counted; ``train.max_bad_steps`` in a row stop the run with
  :class:`TrainingDivergedError`, leaving the last good checkpoint as it is;
- checkpoints every ``train.checkpoint_every`` steps and at the end (vjepa.checkpoint: atomic);
  re-running the same command resumes from the latest complete one: weights, optimizer, step,
  counters, RNG states and the data position of every rank;
- data position: with exact epochs (``data.resampled=false``) each rank's loader restarts at the
  exact sample it stopped at; with ``data.resampled=true`` the stream is infinite and random, so
  it is **resampled by design**: the loader reseeds from its batch count and the resumed run
  sees a fresh draw, not a replay;
- ``metrics.jsonl`` (a row every ``run.log_every`` steps, health every ``train.health_every``),
  tracker scalars (TensorBoard), a tqdm bar, and at the end ``loss.png`` and ``masks.png``.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import ProjectConfiguration, gather_object
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from tqdm.auto import tqdm

from vjepa.checkpoint import WEIGHT_KEYS, latest_checkpoint, load_checkpoint, save_checkpoint
from vjepa.config import Config, save_config, to_dict
from vjepa.metrics import MetricsLog, Throughput, WindowMeter
from vjepa.optim import build_optimizer, set_schedules
from vjepa.schedules import ema_at, lr_at, wd_at


class LaunchError(ValueError):
    """The processes were launched inconsistently (a user error: exit code 2)."""


class TrainingDivergedError(RuntimeError):
    """Too many consecutive non-finite steps; the last good checkpoint is left intact."""


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
    """What one optimizer step reports back to the loop."""

    ok: bool
    loss: float
    terms: dict[str, float]
    grad_norm: float
    schedules: dict[str, float]  # lr, wd, ema used at this step
    target_features: torch.Tensor | None = None  # [B, N, D] of the last micro-batch


@dataclass
class _Run:
    """The live objects of a run, passed between the loop's small functions."""

    cfg: Config
    accelerator: Accelerator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    run_dir: Path
    counters: Counters
    log: MetricsLog
    grid: tuple[int, int, int]
    batches: Iterator[dict] | None = None
    data_states: dict[int, dict] = field(default_factory=dict)  # worker -> last data_state
    data_errors: dict[int, dict] = field(default_factory=dict)  # worker -> cumulative counts
    meters: dict[str, WindowMeter] = field(default_factory=dict)  # loss terms, this window
    schedules: dict[str, float] = field(default_factory=dict)  # lr, wd, ema of the last step
    throughput: Throughput = field(default_factory=Throughput)
    sample: dict | None = None  # one clip + its masks, for masks.png
    last_checkpoint: Path | None = None


# ----------------------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------------------


def token_grid(cfg: Config) -> tuple[int, int, int]:
    """Token grid (t, h, w) of a training clip: (frames / tubelet, crop / patch, crop / patch)."""
    side = cfg.data.crop_size // cfg.model.patch_size
    return (cfg.data.frames_per_clip // cfg.model.tubelet_size, side, side)


def setup(cfg: Config) -> Accelerator:
    """The Accelerator for this run; writes ``config.yaml`` and starts the trackers.

    ``accelerate launch`` sets ACCELERATE_MIXED_PRECISION; then its choice wins, otherwise
    ``train.mixed_precision`` does.
    """
    run_dir = Path(cfg.run.dir)
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
        accelerator.init_trackers("pretrain", config=_flat_hparams(to_dict(cfg)))
    return accelerator


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


def _build(cfg: Config, accelerator: Accelerator) -> tuple[nn.Module, torch.optim.Optimizer]:
    from vjepa.jepa import build_jepa

    model = build_jepa(cfg)
    if cfg.model.compile:
        # In place (nn.Module.compile): state-dict keys stay the same, so checkpoints do too.
        # dynamic: the number of kept tokens changes from batch to batch.
        for module in (model.encoder, model.target_encoder, model.predictor):
            module.compile(dynamic=True)
    optimizer = build_optimizer(model, cfg.optim)
    return accelerator.prepare(model, optimizer)


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------


def _make_batches(run: _Run, start: dict | None) -> Iterator[dict]:
    """This rank's endless batch stream (the loader splits shards by rank and worker itself).

    ``start`` (this rank's saved ``loader_state``) resumes exactly in exact mode; in resampled
    mode the loader reseeds from its batch count instead (resampled by design).
    """
    from vjepa.data.pipeline import make_pretrain_loader
    from vjepa.masks import MaskCollator

    cfg, acc = run.cfg, run.accelerator
    loader = make_pretrain_loader(
        cfg.data,
        mask_fn=MaskCollator(cfg.mask, run.grid),
        seed=cfg.run.seed,
        rank=acc.process_index,
        world_size=acc.num_processes,
        start=start,
    )
    return iter(loader)


def _next_batch(run: _Run) -> dict:
    batch = next(run.batches)
    run.counters.batches += 1
    state = batch.get("data_state") or {}
    worker = int(state.get("worker", 0))
    run.data_states[worker] = state
    run.data_errors[worker] = dict(batch.get("data_errors") or {})
    if run.cfg.train.debug_dump:
        with open(run.run_dir / f"keys-rank{run.accelerator.process_index}.txt", "a") as f:
            f.write(f"{run.counters.step} {' '.join(batch['key'])}\n")
    return batch


def _video_on_device(batch: dict, cfg: Config, device: torch.device) -> torch.Tensor:
    """[B, C, T, H, W] float32 on ``device``; uint8 batches are normalised here (cheaper)."""
    from vjepa.data.augment import normalize

    video = batch["video"].to(device, non_blocking=True)
    if cfg.data.normalize_on_device or video.dtype == torch.uint8:
        video = normalize(video)  # [B, C, T, H, W] float32
    return video


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


def train_step(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: list[dict],
    *,
    step: int,
    cfg: Config,
    poison: bool = False,
    keep_features: bool = False,
) -> StepResult:
    """One optimizer step over ``micro_batches`` (``train.grad_accum`` of them).

    ``poison`` makes the loss NaN (a test hook for the non-finite path). The skip decision is
    taken from all-reduced values, so every rank skips together.
    """
    sched = schedule_values(cfg, step)
    set_schedules(optimizer, sched["lr"], sched["wd"])
    losses, terms, features = [], {}, None
    for batch in micro_batches:
        with accelerator.accumulate(model):
            video = _video_on_device(batch, cfg, accelerator.device)  # [B, C, T, H, W]
            ctx = [m.to(accelerator.device, non_blocking=True) for m in batch["ctx_idx"]]
            tgt = [m.to(accelerator.device, non_blocking=True) for m in batch["tgt_idx"]]
            with accelerator.autocast():
                out = model(video, ctx, tgt)
            loss = out.loss * float("nan") if poison else out.loss
            accelerator.backward(loss)  # divides by grad_accum; all-reduces on the last one
            losses.append(loss.detach().float())
            for name, value in out.terms.items():
                terms[name] = terms.get(name, 0.0) + float(value) / len(micro_batches)
            features = out.target_features.detach() if keep_features else None
    # accelerator.sync_gradients is True now: gradients are averaged over ranks.
    loss = torch.stack(losses).mean()
    max_norm = (
        cfg.optim.clip_grad if cfg.optim.clip_grad > 0 else math.inf
    )  # inf: measure, do not clip
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
    bad = accelerator.reduce((~torch.isfinite(loss)).float().reshape(1), reduction="sum")
    ok = bool(bad.item() == 0) and bool(torch.isfinite(torch.as_tensor(grad_norm)))
    if ok:
        optimizer.step()
        accelerator.unwrap_model(model).update_target(sched["ema"])
    optimizer.zero_grad(set_to_none=True)
    return StepResult(ok, float(loss), terms, float(grad_norm), sched, features)


# ----------------------------------------------------------------------------------------
# Checkpoints and resume
# ----------------------------------------------------------------------------------------

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def _split_weights(full: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """{"encoder.x": t, ...} -> {"encoder": {"x": t}, ...} (the safetensors files)."""
    out: dict[str, dict[str, torch.Tensor]] = {k: {} for k in WEIGHT_KEYS}
    for name, tensor in full.items():
        head, _, rest = name.partition(".")
        if head not in out:
            raise RuntimeError(f"model parameter {name} is outside {WEIGHT_KEYS}")
        out[head][rest] = tensor
    return out


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _data_error_totals(run: _Run) -> dict[str, int]:
    """Skipped samples by reason over the whole run and all ranks (collective)."""
    errors = dict(run.counters.data_errors_before_resume)
    for rank_errors in gather_object([run.data_errors]):
        for counts in rank_errors.values():
            for reason, n in counts.items():
                errors[reason] = errors.get(reason, 0) + int(n)
    return errors


def save(run: _Run) -> None:
    """Checkpoint the run (collective: every rank calls it; rank 0 writes, all wait)."""
    acc, c = run.accelerator, run.counters
    unwrapped = acc.unwrap_model(run.model)
    weights = get_model_state_dict(unwrapped, options=_FULL)  # full on rank 0 (FSDP: gathered)
    optim = get_optimizer_state_dict(unwrapped, _raw(run.optimizer), options=_FULL)
    from vjepa.data.pipeline import loader_state

    # Per-rank values gathered to rank 0: each rank resumes its own stream and RNG.
    per_rank = gather_object(
        [
            {
                "rng": _rng_state(),
                "data": loader_state(c.batches, run.data_states),
                "batches": c.batches,
            }
        ]
    )
    counters = asdict(c) | {"data_errors_before_resume": _data_error_totals(run)}
    if acc.is_main_process:
        state = {
            **_split_weights(weights),
            "optimizer": optim,
            "per_rank": per_rank,
            "counters": counters,
            "world_size": acc.num_processes,
            "config": to_dict(run.cfg),
        }
        run.last_checkpoint = save_checkpoint(
            run.run_dir, c.step, state=state, keep_last=run.cfg.train.keep_last
        )
    acc.wait_for_everyone()


def _raw(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # AcceleratedOptimizer wraps the real one


def restore(run: _Run, path: Path) -> dict | None:
    """Load a checkpoint into the run on every rank; returns this rank's loader ``start``."""
    acc = run.accelerator
    ckpt = load_checkpoint(path)
    unwrapped = acc.unwrap_model(run.model)
    full = {f"{k}.{n}": t for k in WEIGHT_KEYS for n, t in ckpt[k].items()}
    set_model_state_dict(unwrapped, full, options=StateDictOptions(full_state_dict=True))
    set_optimizer_state_dict(
        unwrapped,
        _raw(run.optimizer),
        ckpt["optimizer"],
        options=StateDictOptions(full_state_dict=True),
    )
    run.counters = Counters(**ckpt["counters"])
    run.last_checkpoint = path
    mine = _rank_entry(ckpt, acc)
    if mine is None:  # another world size: the data position cannot map rank to rank
        run.counters.batches = 0
        return None
    run.counters.batches = int(mine["batches"])
    torch.set_rng_state(mine["rng"]["torch"])
    if "cuda" in mine["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["rng"]["cuda"])
    return mine["data"]


def _rank_entry(ckpt: dict, acc: Accelerator) -> dict | None:
    per_rank = ckpt.get("per_rank") or []
    if ckpt.get("world_size") != acc.num_processes or len(per_rank) != acc.num_processes:
        acc.print(
            f"resume: checkpoint written by {ckpt.get('world_size')} processes, now "
            f"{acc.num_processes}: data stream restarts (resampled), RNG reseeded"
        )
        return None
    return per_rank[acc.process_index]


# ----------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------


def _record(run: _Run, result: StepResult) -> None:
    """Window means of the good steps' loss terms; schedules as of the last step."""
    if result.ok:
        for name, value in {
            "loss": result.loss,
            "grad_norm": result.grad_norm,
            **result.terms,
        }.items():
            run.meters.setdefault(name, WindowMeter()).update(value)
    run.schedules = result.schedules


def _log_row(run: _Run, features: torch.Tensor | None) -> dict[str, Any]:
    """Collective (every rank calls it at the same steps): the metrics.jsonl row."""
    acc, c = run.accelerator, run.counters
    # Same names on every rank: the ok/skip decision is collective, so the counts agree.
    names = sorted(k for k, m in run.meters.items() if m.count)
    local = torch.tensor([run.meters[k].mean for k in names], device=acc.device)
    means = acc.reduce(local, reduction="mean") if names else local
    errors = _data_error_totals(run)
    row: dict[str, Any] = {"step": c.step, **{k: float(v) for k, v in zip(names, means.tolist())}}
    row |= {**run.schedules, **run.throughput.summary()}
    row |= {"data_errors": errors, "skipped_steps": c.skipped_steps, "time": time.time()}
    if features is not None:
        row |= _health(features)
    for meter in run.meters.values():
        meter.reset()
    run.throughput.reset()
    return row


def _health(features: torch.Tensor) -> dict[str, float]:
    """Collapse watch on the target features [B, N, D]: see ``vjepa.metrics.health_metrics``."""
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
    clips_per_step = cfg.data.batch_size * cfg.train.grad_accum * acc.num_processes
    bar = tqdm(
        total=cfg.train.max_steps,
        initial=c.step,
        desc="pretrain",
        dynamic_ncols=True,
        disable=not acc.is_main_process,
    )
    run.throughput.reset()
    while c.step < cfg.train.max_steps:
        micro = [_next_batch(run) for _ in range(cfg.train.grad_accum)]
        run.throughput.data_ready()
        if run.sample is None:
            run.sample = _sample_of(micro[0])
        step = c.step
        health = (step + 1) % cfg.train.health_every == 0
        result = train_step(
            acc,
            run.model,
            run.optimizer,
            micro,
            step=step,
            cfg=cfg,
            poison=step in nan_steps,
            keep_features=health,
        )
        run.throughput.step_done(clips_per_step)
        _after_step(run, result, step)
        bar.update(1)
        if c.step % cfg.run.log_every == 0 or health:
            _emit(run, _log_row(run, result.target_features if health else None), bar)
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
        f"step {step}: non-finite loss ({result.loss}) or gradient norm ({result.grad_norm}); "
        f"step skipped ({c.bad_in_row} in a row, {c.skipped_steps} in total)"
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


def _sample_of(batch: dict) -> dict:
    """Clip 0 of a batch and its masks, kept on the CPU for masks.png."""
    return {
        "video": batch["video"][0].detach().cpu(),  # [C, T, H, W]
        "pairs": [(c[0].cpu(), t[0].cpu()) for c, t in zip(batch["ctx_idx"], batch["tgt_idx"])],
    }


def _clip_frames(video: torch.Tensor) -> np.ndarray:
    """[C, T, H, W] (uint8, or ImageNet-normalised float) -> uint8 [T, H, W, 3] for plotting."""
    from vjepa.data.augment import IMAGENET_MEAN, IMAGENET_STD

    if video.dtype != torch.uint8:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
        video = ((video.float() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return video.permute(1, 2, 3, 0).numpy()  # [T, H, W, C]


def _finish(run: _Run) -> None:
    """Plots (main process) and the per-rank debug dump."""
    from vjepa.plots import plot_health, plot_loss, plot_masks

    acc = run.accelerator
    if acc.is_main_process:
        plot_loss(run.run_dir / "metrics.jsonl", run.run_dir / "loss.png")
        plot_health(run.run_dir / "metrics.jsonl", run.run_dir / "health.png")
        if run.sample is not None:
            frames = _clip_frames(run.sample["video"])
            plot_masks(frames, run.sample["pairs"], run.grid, run.run_dir / "masks.png")
    if run.cfg.train.debug_dump:
        digest = parameter_digest(acc.unwrap_model(run.model))
        (run.run_dir / f"params-rank{acc.process_index}.txt").write_text(digest + "\n")


def parameter_digest(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, bytes): equal digests = equal models."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def pretrain(cfg: Config, *, nan_steps: Collection[int] = ()) -> Path:
    """Run (or resume) V-JEPA pretraining into ``cfg.run.dir``; returns the run folder.

    ``nan_steps``: steps whose loss is replaced by NaN (test hook for the skip / stop path).
    """
    from vjepa.data.shards import expand_urls

    expand_urls(cfg.data.shards)  # a wrong shard path fails here, before the run folder exists
    accelerator = setup(cfg)
    try:
        return _pretrain(cfg, accelerator, nan_steps)
    finally:
        accelerator.end_training()  # trackers flushed and closed, also after an error
        # The Accelerate state is a process-wide singleton: reset it so a later pretrain() in
        # the same process (the demo, tests) may pick another precision or accumulation.
        AcceleratorState._reset_state()
        GradientState._reset_state()


def _pretrain(cfg: Config, accelerator: Accelerator, nan_steps: Collection[int]) -> Path:
    run_dir = Path(cfg.run.dir)
    model, optimizer = _build(cfg, accelerator)
    run = _Run(
        cfg=cfg,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        run_dir=run_dir,
        counters=Counters(),
        grid=token_grid(cfg),
        log=MetricsLog(run_dir / "metrics.jsonl", enabled=accelerator.is_main_process),
    )
    resume = latest_checkpoint(run_dir)
    start = restore(run, resume) if resume is not None else None
    event = {"event": "resume", "checkpoint": str(resume)} if resume else {"event": "start"}
    run.log.write({**event, "step": run.counters.step, "world_size": accelerator.num_processes})
    accelerator.print(
        f"{event['event']} at step {run.counters.step} in {run_dir} "
        f"(world size {accelerator.num_processes})"
    )
    if run.counters.step < cfg.train.max_steps:
        run.batches = _make_batches(run, start)
        _run_loop(run, nan_steps)
    _finish(run)
    return run_dir
