"""The run's fault guards that need every rank to agree: the run lock, a failure on rank 0,
and a rank whose data stopped.

Rank 0 alone takes the run lock (vjepa.train.runlock) and writes checkpoints
(vjepa.train.checkpoint); when it fails there, the other ranks must not wait in a collective
for it until the NCCL timeout. :func:`agree_on_failure` broadcasts rank 0's message (None
when it went well) so that every rank raises the same one-line :class:`UsageError`.

Every command that writes a run folder holds its lock through :func:`hold_run_folder` (or,
inside the training loop, :func:`take_run_lock` on the run's Accelerator); nested holds in
one process (``vjepa finetune`` around its training) are one hold (vjepa.train.runlock).

Data can stop on ONE rank: its shards all unreachable (TransportError), a shard that failed
under ``data.retry.on_failure: stop``, a stream that ended. The loop fetches the next batches
before its one per-step collective (vjepa.train.preempt.any_rank_flags), which then also
says "a rank has no batch"; every rank then calls :func:`raise_data_failure`, which raises
the first failed rank's one line on every rank (exit 2 for a UsageError) instead of leaving
the others blocked in the next step's all-reduce. A rank leaving with such an agreed error
ignores SIGTERM (:func:`exit_despite_sigterm`): torchrun sends it to the ranks still closing
down once the first has exited, which would turn their exit 2 into -15.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object, parse_flag_from_env

from vjepa.errors import UsageError
from vjepa.train.runlock import RunLock

__all__ = [
    "agree_on_failure",
    "exit_despite_sigterm",
    "hold_run_folder",
    "raise_data_failure",
    "take_run_lock",
]


def agree_on_failure(accelerator: Any, error: UsageError | None) -> None:
    """Collective: raise rank 0's ``error`` (its type, its message) on every rank, or nothing.

    Single process: raises ``error`` when it is not None.
    """
    if accelerator.num_processes == 1:
        if error is not None:
            raise error
        return
    payload = [(type(error), str(error)) if error is not None else None]
    broadcast_object_list(payload, from_process=0)
    if payload[0] is not None:
        kind, message = payload[0]
        raise kind(message)


def take_run_lock(accelerator: Any, run_dir: str | Path) -> RunLock:
    """The run lock of ``run_dir``, held by the main process; every rank raises the same
    :class:`vjepa.train.runlock.RunLockedError` when another live run holds it.

    ``accelerator``: an Accelerator or a PartialState (``is_main_process``, ``num_processes``).
    """
    lock = RunLock(run_dir, is_main=accelerator.is_main_process)
    error = None
    try:
        lock.acquire()
    except UsageError as err:
        error = err
    agree_on_failure(accelerator, error)
    return lock


@contextmanager
def hold_run_folder(run_dir: str | Path) -> Iterator[RunLock]:
    """Hold ``run_dir``'s run lock for a command's whole life: the one helper every command
    that writes a run or output folder uses (main process only; every rank raises the same
    RunLockedError, exit 2, naming the holder, before anything is written)."""
    # ACCELERATE_USE_CPU as Accelerate's own AcceleratorState reads it: without it a CPU
    # `accelerate launch` would see a world of one here (every rank "main") and keep it.
    lock = take_run_lock(PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")), run_dir)
    try:
        yield lock
    finally:
        lock.release()


def raise_data_failure(accelerator: Any, error: Exception | None) -> NoReturn:
    """Collective, called on every rank once any rank's batches failed (``error``: this
    rank's, None where the batches came): raise the first failed rank's cause everywhere.

    That rank raises its own exception; the others a :class:`UsageError` with the same
    message when it was one (exit 2, the same one line on every rank), else a RuntimeError
    naming the rank and the exception's type (exit 1).
    """
    mine = None
    if error is not None:
        mine = (
            accelerator.process_index,
            isinstance(error, UsageError),
            type(error).__name__,
            str(error),
        )
    causes = gather_object([mine]) if accelerator.num_processes > 1 else [mine]
    rank, usage, kind, message = next(c for c in causes if c is not None)
    if error is not None and rank == accelerator.process_index:
        raise error
    if usage:
        raise UsageError(message)
    raise RuntimeError(f"rank {rank} stopped: {kind}: {message}")


def exit_despite_sigterm() -> None:
    """Ignore SIGTERM from now on: this rank is on its way out with an error every rank agreed
    on (exit 2). torchrun SIGTERMs the other ranks as soon as one has exited; without this
    the slower ranks, still closing their loader workers, would end as -15 instead of 2."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to install
        pass
