"""Video bytes -> uint8 frames: the readers and their fallback. With vjepa.data.encode, the only
module that imports decord, torchcodec or PyAV (encode.py: PyAV only, to write and sniff).

Three backends give the same frames (within codec rounding) for the same indices:

- ``torchcodec`` (optional extra ``vjepa[torchcodec]``, needs the system FFmpeg libraries):
  exact seek from the bytes in memory, ``get_frames_at`` decodes only the requested frames.
- ``pyav`` (always installed): seeks to the key frame before the first requested frame when
  that is far into the video, then decodes forward and keeps the requested frames.
- ``decord`` (installed by default where its wheels exist: x86_64 Linux, 64-bit Windows):
  one ``get_batch`` call (seeks to the nearest key frame and decodes forward). The slowest
  of the three per clip on the benchmark shards, so ``auto`` uses it only as a last resort.

``data.decoder: auto`` (the default) uses the installed backends in
vjepa.data.backends.AUTO_ORDER (fastest first, measured with ``tools/bench_data.py``:
docs/benchmarks.md, "Decoders") and falls back per sample: a video that the first backend cannot open or decode is retried with
the next one. The reader's ``fallbacks`` lists what happened (``"<backend>_<reason>"``); the
loader counts them (a fallback that then succeeds is a fallback, not a data error). A backend
module is imported only when it is used: nothing imports decord unless it decodes.

Every failure is a :class:`DecodeError` with a short machine-readable ``reason`` that the data
error handler counts (``empty``, ``not_video``, ``truncated``, ``no_frames``, ``decode_error``,
``unsupported``: a container the backend is known to mis-decode, e.g. MPEG-TS for decord).

``probe`` (metadata + a check that the last frame decodes) serves the shard writer; encoding,
re-encoding and sniffing live in vjepa.data.encode.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction

import numpy as np

from vjepa.data.backends import Backend, backend_chain

# Leading bytes of the containers we expect in shards: a file that starts like a video but
# fails to open was cut short ("truncated"); anything else is "not_video".
_CONTAINER_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # mp4 / mov / m4v
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm (EBML)
    (0, b"RIFF"),  # avi
)
# PyAV seeks only when the first wanted frame is at least this far in (decoding a few frames
# from the start is cheaper than a seek + flush).
_PYAV_SEEK_MIN_FRAMES = 32

# decord 0.6's error for frames whose rows it pads (widths such as 16, 24, 48 or 72 pixels).
_ROW_PADDING_BUG = "DECORDArrayCopyFromTo"

_quieted: set[str] = set()  # backends whose FFmpeg log level is already set
_devnull_fd: tuple[int, int] | None = None  # (pid, fd) of /dev/null opened for writing


class DecodeError(Exception):
    """A video that cannot be decoded; ``reason`` is a short key for error counting."""

    def __init__(self, reason: str, msg: str = "") -> None:
        super().__init__(f"{reason}: {msg}" if msg else reason)
        self.reason = reason


# ----------------------------------------------------------------------------------------
# Quiet FFmpeg
# ----------------------------------------------------------------------------------------


def quiet_pyav() -> None:
    """Keep FFmpeg's per-file chatter out of PyAV once per process (bad samples are counted).

    Level ``None`` (PyAV's default) installs no log callback at all. Any level, even PANIC,
    routes FFmpeg's log calls through a Python callback that needs the GIL: a frame-threaded
    decoder thread logging while the main thread closes the container (and waits for that
    thread, holding the GIL) deadlocks. Seen here: tools/bench_data.py hung in
    ``avcodec_free_context`` with a decoder thread in ``logging_log_callback``.
    """
    if "pyav" not in _quieted:
        import av

        av.logging.set_level(None)
        _quieted.add("pyav")


def _quiet_decord() -> None:
    if "decord" not in _quieted:
        import decord

        decord.logging.set_level(decord.logging.QUIET)
        _quieted.add("decord")


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (C++ code writing to stderr).

    decord prints ``video_reader.cc:83: ERROR opening: ...`` through its own C++ logger
    (dmlc ``LOG(ERROR)``), which ignores ``decord.logging``'s level, for every file it cannot
    open; the failure itself is raised and counted, so the line is noise. Redirecting the file
    descriptor is the only switch: it costs four system calls per open, and a line that
    another thread writes to stderr during those few milliseconds is lost too.
    """
    global _devnull_fd
    if _devnull_fd is None or _devnull_fd[0] != os.getpid():
        _devnull_fd = (os.getpid(), os.open(os.devnull, os.O_WRONLY))
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(_devnull_fd[1], 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _is_mpegts(data: bytes) -> bool:
    """MPEG-TS (sync byte 0x47 every 188 bytes) or M2TS (192-byte packets, 4-byte prefix)."""
    for first, size in ((0, 188), (4, 192)):
        if len(data) > first + 2 * size and all(data[first + k * size] == 0x47 for k in range(3)):
            return True
    return False


def _open_failure(data: bytes, err: Exception) -> DecodeError:
    """Classify bytes that no demuxer could open."""
    if len(data) == 0:
        return DecodeError("empty", "zero-length video bytes")
    looks_like_video = any(data[o : o + len(m)] == m for o, m in _CONTAINER_MAGIC)
    reason = "truncated" if looks_like_video else "not_video"
    text = str(err).strip().splitlines()
    return DecodeError(
        reason, f"{len(data)} bytes: {text[0][:200] if text else type(err).__name__}"
    )


# ----------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------


class VideoReader:
    """An open video: metadata plus random access to frames. Use as a context manager.

    ``fallbacks``: what went wrong before the frames came out, as ``"<backend>_<reason>"``
    (empty when the first backend decoded everything).
    """

    num_frames: int
    fps: float
    width: int
    height: int
    backend: str
    fallbacks: list[str]

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 ``[T, H, W, 3]`` RGB frames at ``indices`` (any order, repeats allowed)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"indices must be a non-empty 1-D sequence, got shape {idx.shape}")
        if idx.min() < 0 or idx.max() >= self.num_frames:
            raise ValueError(
                f"frame indices {idx.min()}..{idx.max()} outside 0..{self.num_frames - 1}"
            )
        return idx


class _DecordReader(VideoReader):
    backend = "decord"

    def __init__(self, data: bytes) -> None:
        import decord

        _quiet_decord()
        self._vr = None
        if _is_mpegts(data):
            # decord 0.6 seeks MPEG-TS by byte position: it returns the wrong frames for
            # nearly every index, without an error (tests/test_decoder_backends.py shows it).
            raise DecodeError("unsupported", "decord misplaces frames in MPEG-TS (use pyav)")
        self._data = data
        self._pyav: PyAVReader | None = None  # see get_frames: decord's row-padding bug
        self._shape: tuple[int, int] | None = None
        self.fallbacks = []
        try:
            # One decoder thread: loader workers are the parallelism (and 2-core machines
            # oversubscribe otherwise).
            with _stderr_silenced():
                self._vr = decord.VideoReader(io.BytesIO(data), num_threads=1)
        except AssertionError:  # decord asserts a positive frame count
            raise DecodeError("no_frames", "the video stream has no frames") from None
        except Exception as err:  # decord raises bare RuntimeError/DECORDError for bad input
            raise _open_failure(data, err) from None
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())

    def _frame_shape(self) -> tuple[int, int]:
        # decord exposes the size only through a decoded frame: decode it lazily, only when
        # asked (the loader reads the size off the clip it decodes anyway).
        if self._shape is None:
            self._shape = tuple(self.get_frames([0]).shape[1:3])
        return self._shape

    @property
    def height(self) -> int:  # type: ignore[override]
        return int(self._frame_shape()[0])

    @property
    def width(self) -> int:  # type: ignore[override]
        return int(self._frame_shape()[1])

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        # decord decodes sorted unique indices fastest; map back to the requested order.
        uniq, inverse = np.unique(idx, return_inverse=True)
        if self._pyav is not None:
            return self._pyav.get_frames(idx)
        try:
            frames = self._vr.get_batch(uniq.tolist()).asnumpy()  # [U, H, W, 3]
        except Exception as err:
            if _ROW_PADDING_BUG not in str(err):
                raise DecodeError("decode_error", str(err).splitlines()[0][:200]) from None
            # decord 0.6 cannot copy out frames whose width it pads (e.g. 16, 24, 48, 72 px
            # wide): the video is fine, so decode it with PyAV instead of dropping it.
            self.fallbacks.append("decord_row_padding")
            self._pyav = PyAVReader(self._data)
            return self._pyav.get_frames(idx)
        if len(uniq) == len(idx) and (uniq == idx).all():
            return frames
        return frames[inverse]

    def close(self) -> None:
        # Free the FFmpeg contexts now instead of whenever the garbage collector runs: lingering
        # decord readers are the classic source of growing worker memory.
        vr, self._vr = self._vr, None
        if vr is not None and vr._handle is not None:
            vr.__del__()
            vr._handle = None
        if self._pyav is not None:
            self._pyav.close()
            self._pyav = None


class _TorchcodecReader(VideoReader):
    backend = "torchcodec"

    def __init__(self, data: bytes) -> None:
        from torchcodec.decoders import VideoDecoder

        self.fallbacks = []
        try:
            # Exact seek: frame i is the i-th frame in presentation order (a scan of the
            # packet index at open, no decoding); one FFmpeg thread, as for decord.
            self._dec = VideoDecoder(
                data, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1
            )
        except Exception as err:  # ValueError / RuntimeError from the FFmpeg wrapper
            raise _open_failure(data, err) from None
        meta = self._dec.metadata
        self.num_frames = int(meta.num_frames or 0)
        if self.num_frames == 0:
            raise DecodeError("no_frames", "the video stream has no frames")
        # The header's rate, as PyAV and decord report it (the content-based one is skewed by
        # millisecond timestamps, e.g. FLV: 8.205 for an 8 fps file).
        self.fps = float(meta.average_fps_from_header or meta.average_fps or 0.0)
        self.width, self.height = int(meta.width), int(meta.height)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        try:
            # torchcodec sorts and de-duplicates internally and returns the requested order.
            frames = self._dec.get_frames_at(idx.tolist()).data  # [T, H, W, 3] uint8
        except Exception as err:
            text = str(err).strip().splitlines()
            raise DecodeError("decode_error", text[0][:200] if text else repr(err)) from None
        return frames.numpy()

    def close(self) -> None:
        self._dec = None  # the C++ decoder frees its FFmpeg contexts with the last reference


class PyAVReader(VideoReader):
    """The PyAV reader; its open ``container`` and video ``stream`` also serve the transcoder."""

    backend = "pyav"

    def __init__(self, data: bytes) -> None:
        import av

        quiet_pyav()
        self.fallbacks = []
        try:
            self.container = av.open(io.BytesIO(data), mode="r")
        except Exception as err:  # av.error.* subclasses; anything else is also unreadable
            raise _open_failure(data, err) from None
        if not self.container.streams.video:
            self.close()
            raise DecodeError("not_video", "no video stream in the container")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(0)
        self.fps = float(rate)
        try:
            self.num_frames = int(self.stream.frames) or self._count_frames()
        except Exception as err:  # e.g. a raw elementary stream that cannot seek back
            self.close()
            raise DecodeError("decode_error", f"counting frames: {err}") from None
        if self.num_frames == 0:
            self.close()
            raise DecodeError("no_frames", "the video stream has no frames")
        self.width = int(self.stream.codec_context.width)
        self.height = int(self.stream.codec_context.height)

    def _count_frames(self) -> int:
        """Containers without a frame count in the header: count the demuxed packets."""
        count = sum(1 for p in self.container.demux(self.stream) if p.size > 0)
        self.container.seek(0)
        return count

    def _frame_index(self, pts: int | None, fallback: int) -> int:
        if pts is None or not self.fps:
            return fallback
        start = self.stream.start_time or 0
        return int(round(float((pts - start) * self.stream.time_base) * self.fps))

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        wanted = set(idx.tolist())
        first, last = int(idx.min()), int(idx.max())
        got: dict[int, np.ndarray] = {}
        seeked = first >= _PYAV_SEEK_MIN_FRAMES and self.fps > 0
        try:
            if seeked:
                target = int(first / self.fps / self.stream.time_base) + (
                    self.stream.start_time or 0
                )
                self.container.seek(target, backward=True, any_frame=False, stream=self.stream)
            else:
                self.container.seek(0)
            for n, frame in enumerate(self.container.decode(self.stream)):
                i = self._frame_index(frame.pts, n) if seeked else n
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
        except Exception as err:
            raise DecodeError("decode_error", str(err).splitlines()[0][:200]) from None
        missing = wanted - got.keys()
        if missing:
            raise DecodeError("truncated", f"frames {sorted(missing)[:5]} could not be decoded")
        return np.stack([got[i] for i in idx.tolist()])  # [T, H, W, 3]

    def close(self) -> None:
        self.container.close()


def _open_one(backend: str, data: bytes) -> VideoReader:
    if backend == "decord":
        return _DecordReader(data)
    if backend == "torchcodec":
        return _TorchcodecReader(data)
    return PyAVReader(data)


def _current(name: str) -> property:
    """A read-only attribute of a :class:`_FallbackReader` taken from its current reader."""
    return property(lambda self: getattr(self._reader, name))


class _FallbackReader(VideoReader):
    """The first backend of a chain that opens the video; the next ones if decoding fails."""

    def __init__(self, data: bytes, chain: tuple[str, ...]) -> None:
        self._data, self._chain = data, chain
        self._failed: list[str] = []  # "<backend>_<reason>", in order
        self._reader = self._open_from(0)

    def _open_from(self, start: int) -> VideoReader:
        err: DecodeError | None = None
        for pos in range(start, len(self._chain)):
            try:
                reader = _open_one(self._chain[pos], self._data)
            except DecodeError as e:
                self._failed.append(f"{self._chain[pos]}_{e.reason}")
                err = e
                continue
            self._pos = pos
            return reader
        assert err is not None
        raise err  # every backend failed: the last one's reason is the one counted

    # The metadata of the reader that decodes now.
    backend = _current("backend")  # type: ignore[assignment]
    num_frames = _current("num_frames")  # type: ignore[assignment]
    fps = _current("fps")  # type: ignore[assignment]
    width = _current("width")  # type: ignore[assignment]
    height = _current("height")  # type: ignore[assignment]

    @property
    def fallbacks(self) -> list[str]:  # type: ignore[override]
        return self._failed + self._reader.fallbacks

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        while True:
            try:
                return self._reader.get_frames(idx)
            except DecodeError as err:
                if self._pos + 1 >= len(self._chain):
                    raise
                self._failed.append(f"{self._reader.backend}_{err.reason}")
                self._reader.close()
                self._reader = self._open_from(self._pos + 1)
            except ValueError as err:  # a later backend counts fewer frames than the first
                raise DecodeError("truncated", f"{self._reader.backend}: {err}") from None

    def close(self) -> None:
        self._reader.close()


def open_video(data: bytes, backend: Backend = "auto") -> VideoReader:
    """Open encoded video bytes held in memory; raises :class:`DecodeError` on bad input.

    ``backend``: ``auto`` (usable backends fastest first, falling back per sample), or one of
    ``decord``, ``torchcodec``, ``pyav`` (only that one; :class:`ConfigError` if unusable).
    """
    chain = backend_chain(backend)
    if len(data) == 0:
        raise DecodeError("empty", "zero-length video bytes")
    if len(chain) == 1:
        return _open_one(chain[0], data)
    return _FallbackReader(data, chain)


def probe(data: bytes, backend: Backend = "auto") -> dict:
    """Metadata of a video, after checking that its first and last frames decode.

    Returns ``dict(fps, num_frames, width, height, duration)``; raises :class:`DecodeError`
    for zero-length, non-video or truncated bytes (a file cut inside its media data opens
    but fails on the last frame).
    """
    with open_video(data, backend) as reader:
        try:
            reader.get_frames([reader.num_frames - 1])
        except DecodeError as err:
            raise DecodeError("truncated", f"last frame does not decode ({err})") from None
        fps = reader.fps
        return {
            "fps": fps,
            "num_frames": reader.num_frames,
            "width": reader.width,
            "height": reader.height,
            "duration": reader.num_frames / fps if fps > 0 else 0.0,
        }
