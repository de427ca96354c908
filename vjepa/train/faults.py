"""The run's fault guards that need every rank to agree: the run lock and a failure on rank 0.

Rank 0 alone takes the run lock (vjepa.train.runlock) and writes checkpoints
(vjepa.train.checkpoint); when it fails there, the other ranks must not wait in a collective
for it until the NCCL timeout. :func:`agree_on_failure` broadcasts rank 0's message (None
when it went well) so that every rank raises the same one-line :class:`UsageError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate.utils import broadcast_object_list

from vjepa.errors import UsageError
from vjepa.train.runlock import RunLock

__all__ = ["agree_on_failure", "take_run_lock"]


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
    :class:`vjepa.train.runlock.RunLockedError` when another live run holds it."""
    lock = RunLock(run_dir, is_main=accelerator.is_main_process)
    error = None
    try:
        lock.acquire()
    except UsageError as err:
        error = err
    agree_on_failure(accelerator, error)
    return lock
