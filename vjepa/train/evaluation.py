"""The loop's periodic evaluation (``Task.evaluate``) and ``train.keep_best``.

Every ``task.eval_every(cfg)`` steps and at the last step, every rank runs ``task.evaluate`` on
the unwrapped model, in eval mode, without gradients, under the run's autocast and inside
``torch.random.fork_rng``: the global RNG (CPU, and this process's GPU) is put back as it was,
so an evaluation never changes the training after it (its own draws take their own
generators; a DataLoader's iterator draws its base seed from the global RNG). The metrics go
to metrics.jsonl as one row ``{"step", <metric>..., "eval_s"}`` and to the trackers; with
several processes every rank takes the main process's values (one keep_best decision).

``train.keep_best`` names one of the metrics: a strictly higher value than any before saves a
complete checkpoint of the usual form (weights, optimizer, counters, config) into
``run.dir/best/checkpoints/step-XXXXXXXX/``, keeping one. The best value and its step are
counters, so a resumed run goes on comparing against them.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list

from vjepa.train.checkpoint import BEST_DIR, latest_checkpoint
from vjepa.train.state import RunState, save

__all__ = ["BEST_DIR", "best_checkpoint", "evaluate", "evaluation_due"]


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint kept by ``train.keep_best`` in ``run_dir``, or None."""
    return latest_checkpoint(Path(run_dir) / BEST_DIR)


def evaluation_due(run: RunState) -> bool:
    """True after the steps at which the task evaluates (every ``eval_every``, and the last)."""
    if run.task.evaluate is None:
        return False
    every, step = run.task.eval_every(run.cfg), run.counters.step
    return every > 0 and (step % every == 0 or step == run.cfg.train.max_steps)


def evaluate(run: RunState) -> dict[str, float]:
    """Run the task's evaluation (collective), log it, keep the best checkpoint."""
    acc, cfg = run.accelerator, run.cfg
    model = run.unwrapped_model()
    devices = [acc.device.index or 0] if acc.device.type == "cuda" else []
    start = time.perf_counter()
    training = model.training
    with torch.random.fork_rng(devices=devices), torch.no_grad(), acc.autocast():
        model.eval()
        try:
            metrics = run.task.evaluate(cfg, model, acc.device)
        finally:
            model.train(training)
    seconds = time.perf_counter() - start
    if acc.num_processes > 1:  # one decision for every rank (keep_best saves collectively)
        metrics = broadcast_object_list([metrics])[0]
    row = {"step": run.counters.step, **metrics, "eval_s": round(seconds, 3)}
    run.log.write(row)
    acc.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])
    shown = "  ".join(f"{k} {v:.2f}" for k, v in metrics.items())
    acc.print(f"step {row['step']}: {shown} ({seconds:.1f} s)")
    if cfg.train.keep_best:
        _keep_best(run, metrics)
    return metrics


def _keep_best(run: RunState, metrics: dict[str, float]) -> None:
    name, c = run.cfg.train.keep_best, run.counters
    if name not in metrics:
        raise RuntimeError(
            f"train.keep_best={name}: the evaluation wrote no such metric ({', '.join(metrics)})"
        )
    value = float(metrics[name])
    if c.best_value is not None and value <= c.best_value:
        return
    c.best_value, c.best_step = value, c.step
    save(run, into=run.run_dir / BEST_DIR, keep_last=1)
