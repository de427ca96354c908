"""Preemption: turn SIGTERM / SIGUSR1 into "finish this step, checkpoint, exit 75".

SLURM (``--signal``) and cloud spot instances send a signal shortly before they kill a job;
without a handler the run loses every step since its last checkpoint. :class:`Preemption`
installs handlers that only set a flag (a signal handler must not do the work: it would run
in the middle of a step); the loop polls :meth:`Preemption.requested` once per step, after
the optimizer step, and then saves a complete checkpoint and calls :func:`exit_preempted`.

The exit code is :data:`PREEMPTED_EXIT_CODE` = 75 (``EX_TEMPFAIL`` of sysexits.h: "temporary
failure, try again"): the run saved a complete checkpoint and re-running the same command
resumes from it. It differs on purpose from 143 (128 + SIGTERM: killed by the signal WITHOUT a
checkpoint) and 137 (SIGKILL), so a job script can tell them apart
(``configs/slurm/pretrain.sbatch`` requeues on 75).

Every rank of a run must stop at the same step (the checkpoint save is collective), but a
signal may reach only some ranks, or reach them in different steps: the loop asks
:func:`any_rank_requested`, a one-scalar all-reduce (MAX), instead of its own flag.

Which signals: SIGTERM (what schedulers and ``docker stop`` send; torchrun / ``accelerate
launch`` forward it to their workers) and SIGUSR1 (SLURM's early warning, for a job launched
without a launcher in between). SIGINT (Ctrl-C) is left alone: a user at the keyboard wants
to stop now.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import NoReturn

import torch
import torch.distributed as dist

log = logging.getLogger("vjepa.train")

PREEMPTED_EXIT_CODE = 75
"""Exit status of a run that stopped on a preemption signal after a complete checkpoint."""

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)


class Preemption:
    """Context manager: while inside, SIGTERM / SIGUSR1 set a flag instead of killing.

    The previous handlers are restored on exit. Signal handlers can only be installed from
    the main thread; elsewhere (e.g. a test runner thread) it installs nothing and
    :meth:`requested` stays False, with one log line.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = SIGNALS) -> None:
        self.signals = signals
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Only record: the loop does the work between steps.
        if self.received is None:
            self.received = signal.Signals(signum)

    def requested(self) -> bool:
        """True once one of the signals arrived (this process only; see any_rank_requested)."""
        return self.received is not None

    def __enter__(self) -> Preemption:
        if threading.current_thread() is not threading.main_thread():
            log.warning("not the main thread: preemption signals are not handled")
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()


def any_rank_requested(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is True on any rank (MAX all-reduce of one scalar).

    Collective: every rank must call it at the same step. Without torch.distributed it is
    ``flag``. ``device``: where the reduction runs (``accelerator.device`` for NCCL).
    """
    return any_rank_flags((flag,), device)[0]


def any_rank_flags(flags: tuple[bool, ...], device: torch.device | str = "cpu") -> tuple[bool, ...]:
    """Each of ``flags`` True on every rank when it is True on any rank: ONE MAX all-reduce
    of ``len(flags)`` scalars (the loop asks "preempted?" and "a rank without data?" at once).

    Collective like :func:`any_rank_requested`; without torch.distributed it is ``flags``.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return tuple(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v > 0) for v in t.tolist())


def exit_preempted(signame: str, step: int, checkpoint: str) -> NoReturn:
    """Log the one line that says what happened, then exit with :data:`PREEMPTED_EXIT_CODE`.

    Call it after the checkpoint of ``step`` is complete on disk, on every rank.
    ``SystemExit`` carries the code through the CLI and Accelerate without a traceback.
    """
    log.warning(
        "preempted (%s): saved step %d to %s; exiting with %d, re-run the same command to resume",
        signame,
        step,
        checkpoint,
        PREEMPTED_EXIT_CODE,
    )
    raise SystemExit(PREEMPTED_EXIT_CODE)
