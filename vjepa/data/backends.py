"""Which video decoders can run here, and which ones ``data.decoder`` decodes with.

``data.decoder: auto`` (the default) uses the installed backends in :data:`AUTO_ORDER`
(fastest first, measured with ``tools/bench_data.py``: docs/benchmarks.md, "Decoders") and
falls back per sample in :data:`FALLBACK_ORDER` (vjepa.data.decode). Nothing here imports a
backend: decord and PyAV are looked up with ``importlib.util.find_spec``; torchcodec, which
needs the system FFmpeg libraries, is imported once in a child process.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Literal

from vjepa.config import ConfigError

Backend = Literal["auto", "decord", "torchcodec", "pyav"]
BACKENDS: tuple[str, ...] = ("decord", "torchcodec", "pyav")
AUTO_ORDER: tuple[str, ...] = ("torchcodec", "pyav", "decord")
"""The backend ``auto`` decodes with: the first usable one here, fastest first (measured:
docs/benchmarks.md, "Decoders")."""
FALLBACK_ORDER: tuple[str, ...] = ("pyav", "torchcodec", "decord")
"""Where ``auto`` retries a sample its first backend failed on, most exact first: PyAV decodes
forward from a key frame and maps timestamps to indices; decord returns misplaced frames from
MPEG-TS without raising (tests/test_decoder_backends.py), so it comes last."""

_INSTALL_HINT = {
    "decord": "pip install decord (wheels: x86_64 Linux, Windows, Intel macOS)",
    "torchcodec": "pip install 'vjepa[torchcodec]' and the FFmpeg libraries "
    "(Debian/Ubuntu: apt-get install ffmpeg)",
    "pyav": "pip install av",
}
_MODULE = {"decord": "decord", "torchcodec": "torchcodec", "pyav": "av"}

_usable: dict[str, str | None] = {}  # backend -> None (usable) or why not, per process
_announced: set[str] = set()  # data.decoder values already reported in this process


def _why_unusable(name: str) -> str | None:
    """None if backend ``name`` can decode in this process, else why not (cached).

    decord and PyAV are checked without importing them; torchcodec is installed but unusable
    when the FFmpeg shared libraries are missing, so it is imported once in a child process.
    """
    if name not in _usable:
        try:
            spec = importlib.util.find_spec(_MODULE[name])
        except (ImportError, ValueError):  # an import hook that hides the module
            spec = None
        if spec is None:
            _usable[name] = f"{_MODULE[name]} is not installed ({_INSTALL_HINT[name]})"
        elif name == "torchcodec":
            _usable[name] = _torchcodec_problem()
        else:
            _usable[name] = None
    return _usable[name]


def _torchcodec_problem() -> str | None:
    """Why torchcodec cannot load FFmpeg, or None; checked in a child process.

    Not in this one: torchcodec loads the system's FFmpeg libraries, and once they are in a
    process PyAV's bundled libvpx encoder fails there ("ABI version mismatch"). So torchcodec
    enters a process only when it decodes (in practice, the loader workers).
    """
    code = "from torchcodec.decoders import VideoDecoder"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    last = lines[-1][:200] if lines else f"exit code {done.returncode}"
    return f"torchcodec cannot load FFmpeg ({_INSTALL_HINT['torchcodec']}): {last}"


def available_backends() -> tuple[str, ...]:
    """The backends that can decode in this process, fastest first (``auto`` uses the first)."""
    return tuple(b for b in AUTO_ORDER if _why_unusable(b) is None)


def _auto_chain() -> tuple[str, ...]:
    usable = available_backends()
    if not usable:
        return ()
    return (usable[0], *(b for b in FALLBACK_ORDER if b in usable[1:]))


def backend_chain(backend: str = "auto", *, announce: bool = True) -> tuple[str, ...]:
    """The backends :func:`open_video` tries for ``data.decoder=backend``, in order.

    ``auto``: the fastest usable backend, then the other usable ones in
    :data:`FALLBACK_ORDER`; a named backend: only that one. Raises
    :class:`ConfigError` (naming ``data.decoder``) for an unknown or unusable backend. The
    first call per value says on stderr which backend is in use (once per process; loader
    workers forked after it stay quiet).
    """
    if backend == "auto":
        chain = _auto_chain()
        if not chain:
            raise ConfigError("data.decoder=auto: no video decoder is usable: " + _why_all())
    elif backend in BACKENDS:
        why = _why_unusable(backend)
        if why is not None:
            raise ConfigError(f"data.decoder={backend}: {why}")
        chain = (backend,)
    else:
        raise ConfigError(f"data.decoder={backend!r} is not one of auto, {', '.join(BACKENDS)}")
    if announce and backend not in _announced:
        _announced.add(backend)
        rest = f", falling back per sample to {', '.join(chain[1:])}" if len(chain) > 1 else ""
        print(f"vjepa: video decoder {chain[0]} (data.decoder={backend}{rest})", file=sys.stderr)
    return chain


def _why_all() -> str:
    return "; ".join(f"{b}: {_why_unusable(b)}" for b in AUTO_ORDER)
