"""The live state of a training run, and its checkpoint: save and resume.

:class:`RunState` holds what the loop's small functions share (the prepared model and
optimizer, counters, the data position of every worker, the metrics window). :func:`save`
writes it atomically (vjepa.train.checkpoint.save_training_state: one safetensors file per
top-level child module of the model); :func:`restore` loads it back on every rank: weights,
optimizer, step, counters, RNG and the data position of every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import Tensor, nn

from vjepa.config import Config, to_dict
from vjepa.data.loader import loader_state
from vjepa.train.checkpoint import restore_training_state, save_training_state
from vjepa.train.metrics import MetricsLog, Throughput
from vjepa.train.preempt import Preemption
from vjepa.train.task import Task


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
    best_value: float | None = None
    """The best value of ``train.keep_best`` so far (None: none evaluated yet)."""
    best_step: int = 0
    """The step of the checkpoint kept in run.dir/best/ (0: none)."""
    data_retries_before_resume: dict[str, int] = field(default_factory=dict)
    """Remote-shard faults recovered by a retry, by kind (open, resume), all ranks, before the
    last resume."""


@dataclass
class Window:
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
class RunState:
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
    retries: dict[int, dict] = field(default_factory=dict)  # worker -> recovered remote faults
    window: Window = field(default_factory=Window)  # good steps' numbers, this log window
    schedules: dict[str, float] = field(default_factory=dict)  # lr, wd, ema of the last step
    throughput: Throughput = field(default_factory=Throughput)
    plotted: bool = False
    last_checkpoint: Path | None = None
    # Cached for the optimizer step: unwrap_model walks every module (~3 ms a step on the demo).
    unwrapped: nn.Module | None = None
    trainable: list[Tensor] | None = None  # the parameters that get gradients
    preempt: Preemption | None = None  # SIGTERM / SIGUSR1 flag (vjepa.train.preempt)

    def unwrapped_model(self) -> nn.Module:
        """``accelerator.unwrap_model(model)``, computed once per run."""
        if self.unwrapped is None:
            self.unwrapped = self.accelerator.unwrap_model(self.model)
        return self.unwrapped


def _summed(per_rank: list[dict[int, dict]], start: dict[str, int]) -> dict[str, int]:
    """``start`` plus the per-worker counts of every rank, by reason."""
    totals = dict(start)
    for rank_counts in per_rank:
        for counts in rank_counts.values():
            for reason, n in counts.items():
                totals[reason] = totals.get(reason, 0) + int(n)
    return totals


def data_counts(run: RunState) -> dict[str, dict[str, int]]:
    """The loaders' counts over all ranks, in one gather (collective): ``data_errors``
    (skipped samples by reason) and ``data_retries`` (recovered remote faults by kind) over
    the whole run, ``decoder_fallbacks`` since this process started."""
    gathered = gather_object([(run.data_errors, run.retries, run.fallbacks)])
    c = run.counters
    return {
        "data_errors": _summed([g[0] for g in gathered], c.data_errors_before_resume),
        "data_retries": _summed([g[1] for g in gathered], c.data_retries_before_resume),
        "decoder_fallbacks": _summed([g[2] for g in gathered], {}),
    }


def save(run: RunState, into: Path | None = None, keep_last: int | None = None) -> None:
    """Checkpoint the run (collective: every rank calls it; rank 0 writes, all wait).

    ``into``: another folder than the run's own (``train.keep_best``: run.dir/best), keeping
    ``keep_last`` checkpoints there; the run's last checkpoint stays what it was.
    """
    acc, c = run.accelerator, run.counters
    totals = data_counts(run)
    counters = asdict(c) | {
        "data_errors_before_resume": totals["data_errors"],
        "data_retries_before_resume": totals["data_retries"],
    }
    folder = save_training_state(
        acc,
        acc.unwrap_model(run.model),
        run.optimizer,
        run_dir=into or run.run_dir,
        step=c.step,
        per_rank={"data": loader_state(c.batches, run.data_states), "batches": c.batches},
        extra={"counters": counters, "config": to_dict(run.cfg)},
        keep_last=keep_last or run.cfg.train.keep_last,
    )
    if into is None:
        run.last_checkpoint = folder or run.run_dir / "checkpoints" / f"step-{c.step:08d}"


def restore(run: RunState, path: Path) -> dict | None:
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
