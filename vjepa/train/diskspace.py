"""A full disk while checkpointing: one line naming the folder and the space needed.

A full disk does not always surface as ``OSError(ENOSPC)``: safetensors raises
``SafetensorError("... No space left on device (os error 28)")`` and ``torch.save`` a
``RuntimeError("[enforce fail at inline_container.cc] unexpected pos 576 vs 534")`` (both
seen on a 1 MiB tmpfs). :func:`checkpoint_space` therefore treats any error of the write as a
full disk when it says so (errno ENOSPC / EDQUOT, "No space left", "os error 28") or when
the device is (nearly) full afterwards, and turns it into :class:`DiskFullError`, a
UsageError (one line, exit 2) with the folder, the bytes needed and the bytes free.

The previous checkpoint is never at risk: vjepa.train.checkpoint writes into
``.tmp-step-*/`` and renames only a complete folder, and prunes old ones only after that.
The partial ``.tmp-*`` folder of the failed save is removed here so the space it took is
free again (and the message reports the space with it gone).

Use (rank 0, around the write)::

    with checkpoint_space(checkpoint_dir(run_dir), state_nbytes(state)):
        save_checkpoint(run_dir, step, state=state, keep_last=keep_last)
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from vjepa.errors import UsageError

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_WORDS = ("no space left on device", "os error 28", "disk quota exceeded")
NEARLY_FULL_BYTES = 1 << 20
"""Free space below which a failed write is taken to be a full disk whatever its message."""


class DiskFullError(UsageError):
    """No room on the device for a checkpoint."""


def state_nbytes(state: Any) -> int:
    """Bytes of the tensors, bytes and strings in a (nested) checkpoint state: its size on disk,
    give or take the headers."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, list | tuple):
        return sum(state_nbytes(v) for v in state)
    if isinstance(state, bytes | str):
        return len(state)
    return 8


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent (disk_usage needs a path that exists)."""
    for path in (folder, *folder.parents):
        if path.exists():
            return path
    return Path("/")


def free_bytes(folder: str | Path) -> int:
    return shutil.disk_usage(_existing(Path(folder))).free


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def is_disk_full(err: BaseException, folder: str | Path) -> bool:
    """True when ``err`` (raised by a write into ``folder``) means the device is full."""
    if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
        return True
    text = str(err).lower()
    if any(word in text for word in _FULL_WORDS):
        return True
    return free_bytes(folder) < NEARLY_FULL_BYTES


def _message(folder: Path, needed: int) -> str:
    return (
        f"no space left for a checkpoint in {folder}: it needs about {_mb(needed)}, "
        f"{_mb(free_bytes(folder))} free; free some space or set run.dir on a larger disk "
        "(the previous checkpoint is intact)"
    )


@contextmanager
def checkpoint_space(folder: str | Path, needed: int) -> Iterator[None]:
    """Fail before writing when ``needed`` bytes do not fit in ``folder``; turn a full disk
    during the write into :class:`DiskFullError` after removing the partial ``.tmp-*`` save.
    """
    folder = Path(folder)
    if free_bytes(folder) < needed:
        raise DiskFullError(_message(folder, needed))
    try:
        yield
    except Exception as err:
        if not is_disk_full(err, folder):
            raise
        for partial in folder.glob(".tmp-*"):
            shutil.rmtree(partial, ignore_errors=True)
        raise DiskFullError(_message(folder, needed)) from None
