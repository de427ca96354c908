"""One run per folder: a lock file in the run folder that names its holder.

Starting the same command twice is a common slip; without a lock both processes would write
checkpoints and ``metrics.jsonl`` into one folder. The lock is ``<run.dir>/run.lock``, a
small JSON file ``{"host", "pid", "started", "job"}`` (``job``: ``SLURM_JOB_ID`` or null) created atomically with
``O_CREAT | O_EXCL`` (atomic on local filesystems and on NFSv3+ shared by several nodes).

- A second run on a held folder raises :class:`RunLockedError` (a :class:`UsageError`: the
  CLI prints its one line and exits 2) naming the holder's host and pid.
- A lock left by a dead process (same host, pid gone) is taken over, with one log line. A lock
  from another host cannot be checked from here and is respected; its message says to delete
  the file if that run is gone.
- A lock written by an earlier incarnation of the same SLURM job (``SLURM_JOB_ID`` equal; a
  requeued job keeps its id but may land on other nodes) is taken over the same way: that
  process is gone, SLURM ended it before the requeue.
- Only the main process takes it (``is_main``): the other ranks of the same run, on this
  node or others, share the folder legitimately.
- A folder the lock created (it did not exist) is removed again at release when it is still
  empty: a command that stops on a user error before writing leaves nothing behind.
- Within one process a second hold of a folder it already holds is the same hold, counted
  (``vjepa finetune`` holds its folder for the report and calls the training loop, which
  takes it again); the file goes when the outermost hold ends.

``check_free(run_dir)`` refuses a held folder without taking it (the CLI, before it imports
a command's modules). Use::

    with RunLock(run_dir, is_main=accelerator.is_main_process):
        train(...)
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from pathlib import Path

from vjepa.errors import UsageError

log = logging.getLogger("vjepa.train")

LOCK_FILE = "run.lock"

_HELD: dict[str, int] = {}
"""Lock files this process holds (real path) and how many holds are open on each."""


class RunLockedError(UsageError):
    """The run folder is held by another live run."""


def _pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists on this host (signal 0 probes, sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_lock(run_dir: str | Path) -> dict | None:
    """The holder recorded in ``<run_dir>/run.lock`` (host, pid, started), or None if unlocked.

    A file that is not valid JSON (a holder killed mid-write) reads as ``{}``.
    """
    path = Path(run_dir) / LOCK_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """Context manager holding ``<run_dir>/run.lock`` for the life of a run (main process only).

    ``acquire`` never waits: a live holder raises :class:`RunLockedError` at once.
    """

    def __init__(self, run_dir: str | Path, *, is_main: bool) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.is_main = is_main
        self.held = False
        self._key = ""  # the real path once held
        self._created = False  # the folder did not exist before: removed again if left empty

    def _create(self) -> bool:
        """Create the lock file atomically with our holder record; False if it exists."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "job": os.environ.get("SLURM_JOB_ID"),
        }
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _stale(self, holder: dict) -> bool:
        """True when the holder is a dead process on this host, an earlier run of this SLURM job
        (requeued), or the file is unreadable."""
        if not holder:  # empty / corrupt: its writer died between create and write
            return True
        job = os.environ.get("SLURM_JOB_ID")
        if job and holder.get("job") == job:
            return True
        if holder.get("host") != socket.gethostname():
            return False  # cannot probe another host's pids: respect it
        pid = holder.get("pid")
        return isinstance(pid, int) and pid != os.getpid() and not _pid_alive(pid)

    def _refusal(self, holder: dict) -> RunLockedError:
        return RunLockedError(
            f"run folder {self.path.parent} is in use by pid {holder.get('pid')} on "
            f"{holder.get('host')} (since {holder.get('started')}); use another run.dir, "
            f"or delete {self.path} if that run is gone"
        )

    def check(self) -> None:
        """Raise :class:`RunLockedError` now when another live run holds the folder; takes
        nothing. The CLI calls it before its heavy imports so that a second run is refused
        within a second; the command's own :meth:`acquire` still decides."""
        holder = read_lock(self.path.parent)
        if holder is None or _HELD.get(os.path.realpath(self.path)):
            return
        if not self._stale(holder):
            raise self._refusal(holder)

    def acquire(self) -> None:
        if not self.is_main or self.held:
            return
        self._created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        mine = read_lock(self.path.parent) or {}
        if _HELD.get(key) and mine.get("pid") == os.getpid():  # this process holds it: nested
            _HELD[key] += 1
            self.held, self._key = True, key
            return
        for _ in range(3):  # bounded: a take-over can race with another starter
            if self._create():
                _HELD[key] = 1
                self.held, self._key = True, key
                return
            holder = read_lock(self.path.parent)
            if holder is None:  # released between our create and read: try again
                continue
            if not self._stale(holder):
                raise self._refusal(holder)
            log.warning(
                "taking over the stale run lock %s of pid %s on %s (%s)",
                self.path,
                holder.get("pid"),
                holder.get("host"),
                "an earlier run of this SLURM job"
                if holder.get("job") and holder.get("job") == os.environ.get("SLURM_JOB_ID")
                else "no such process",
            )
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass  # another starter removed it first; the O_EXCL create decides
        raise RunLockedError(f"could not take the run lock {self.path}: other runs keep starting")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        _HELD[self._key] -= 1
        if _HELD[self._key] > 0:  # an outer hold in this process goes on
            return
        del _HELD[self._key]
        holder = read_lock(self.path.parent)
        # Remove only our own lock (a take-over by another run must not be undone).
        if (
            holder
            and holder.get("pid") == os.getpid()
            and holder.get("host") == socket.gethostname()
        ):
            try:
                os.unlink(self.path)
            except OSError as err:
                if err.errno != errno.ENOENT:
                    raise
        if self._created:  # a command that stopped before writing leaves no empty folder
            try:
                self.path.parent.rmdir()
            except OSError:
                pass  # not empty: the run wrote into it

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def check_free(run_dir: str | Path) -> None:
    """Raise :class:`RunLockedError` at once when another live run holds ``run_dir``; a
    read-only look that takes nothing (see :meth:`RunLock.check`)."""
    RunLock(run_dir, is_main=True).check()
