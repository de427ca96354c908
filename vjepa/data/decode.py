"""Video bytes -> uint8 frames. The ONLY module that imports decord or PyAV.

Two backends give the same frames for the same indices:

- ``decord`` (default): opens the bytes from memory and decodes only the requested frames with
  one ``get_batch`` call (it seeks to the nearest key frame and decodes forward).
- ``pyav``: the fallback; seeks to the key frame before the first requested frame when that is
  far into the video, then decodes forward and keeps the requested frames.

Every failure is a :class:`DecodeError` with a short machine-readable ``reason`` that the data
error handler counts (``empty``, ``not_video``, ``truncated``, ``no_frames``, ``decode_error``).

``probe`` (metadata + a check that the last frame decodes) and ``transcode`` (re-encode to a
short side / frame rate) serve the shard writer.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from types import TracebackType
from typing import Literal

import numpy as np

Backend = Literal["decord", "pyav"]

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

_quiet_done = False
# decord 0.6's error for frames whose rows it pads (widths such as 16, 24, 48 or 72 pixels).
_ROW_PADDING_BUG = "DECORDArrayCopyFromTo"


class DecodeError(Exception):
    """A video that cannot be decoded; ``reason`` is a short key for error counting."""

    def __init__(self, reason: str, msg: str = "") -> None:
        super().__init__(f"{reason}: {msg}" if msg else reason)
        self.reason = reason


def _quiet() -> None:
    """Silence FFmpeg's per-file chatter once per process (bad samples are counted instead)."""
    global _quiet_done
    if _quiet_done:
        return
    import av
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    av.logging.set_level(av.logging.PANIC)
    _quiet_done = True


def _open_failure(data: bytes, err: Exception) -> DecodeError:
    """Classify bytes that no demuxer could open."""
    if len(data) == 0:
        return DecodeError("empty", "zero-length video bytes")
    looks_like_video = any(data[o : o + len(m)] == m for o, m in _CONTAINER_MAGIC)
    reason = "truncated" if looks_like_video else "not_video"
    return DecodeError(reason, f"{len(data)} bytes: {str(err).splitlines()[0][:200]}")


class VideoReader:
    """An open video: metadata plus random access to frames. Use as a context manager."""

    num_frames: int
    fps: float
    width: int
    height: int

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 ``[T, H, W, 3]`` RGB frames at ``indices`` (any order, repeats allowed)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
    def __init__(self, data: bytes) -> None:
        import decord

        self._vr = None
        self._data = data
        self._pyav: _PyAVReader | None = None  # see get_frames: decord's row-padding bug
        self._shape: tuple[int, int] | None = None
        try:
            # One decoder thread: loader workers are the parallelism (and 2-core machines
            # oversubscribe otherwise).
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
            self._pyav = _PyAVReader(self._data)
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


class _PyAVReader(VideoReader):
    def __init__(self, data: bytes) -> None:
        import av

        try:
            self._container = av.open(io.BytesIO(data), mode="r")
        except Exception as err:  # av.error.* subclasses; anything else is also unreadable
            raise _open_failure(data, err) from None
        if not self._container.streams.video:
            self.close()
            raise DecodeError("not_video", "no video stream in the container")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(0)
        self.fps = float(rate)
        self.num_frames = int(self._stream.frames) or self._count_frames()
        if self.num_frames == 0:
            self.close()
            raise DecodeError("no_frames", "the video stream has no frames")
        self.width = int(self._stream.codec_context.width)
        self.height = int(self._stream.codec_context.height)

    def _count_frames(self) -> int:
        """Containers without a frame count in the header: count the demuxed packets."""
        count = sum(1 for p in self._container.demux(self._stream) if p.size > 0)
        self._container.seek(0)
        return count

    def _frame_index(self, pts: int | None, fallback: int) -> int:
        if pts is None or not self.fps:
            return fallback
        start = self._stream.start_time or 0
        return int(round(float((pts - start) * self._stream.time_base) * self.fps))

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        wanted = set(idx.tolist())
        first, last = int(idx.min()), int(idx.max())
        got: dict[int, np.ndarray] = {}
        seeked = first >= _PYAV_SEEK_MIN_FRAMES and self.fps > 0
        try:
            if seeked:
                target = int(first / self.fps / self._stream.time_base) + (
                    self._stream.start_time or 0
                )
                self._container.seek(target, backward=True, any_frame=False, stream=self._stream)
            else:
                self._container.seek(0)
            for n, frame in enumerate(self._container.decode(self._stream)):
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
        self._container.close()


def open_video(data: bytes, backend: Backend = "decord") -> VideoReader:
    """Open encoded video bytes held in memory; raises :class:`DecodeError` on bad input."""
    _quiet()
    if len(data) == 0:
        raise DecodeError("empty", "zero-length video bytes")
    if backend == "decord":
        return _DecordReader(data)
    if backend == "pyav":
        return _PyAVReader(data)
    raise ValueError(f"unknown video decoder backend {backend!r} (decord or pyav)")


def probe(data: bytes, backend: Backend = "decord") -> dict:
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


def encode_frames(
    frames: np.ndarray,
    *,
    fps: float,
    fmt: str = "mp4",
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
) -> bytes:
    """Encode uint8 RGB frames ``[T, H, W, 3]`` (``pix_fmt``) into a container held in memory.

    ``codec="libx264rgb", pix_fmt="rgb24", options={"qp": "0"}`` is lossless RGB (env renders).

    One encoder thread and explicit timestamps, so the same frames and options give the same
    bytes from run to run (the sample-corpus generator and the tests rely on it).
    """
    import av

    rate = Fraction(fps).limit_denominator(1001)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.codec_context.thread_count = 1
        if options:
            stream.options = options
        for t, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts, video_frame.time_base = t, 1 / rate
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode(None):  # flush delayed frames
            container.mux(packet)
    return buf.getvalue()


def _scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side`` (never upscaled), both even."""
    if short_side is None or min(width, height) <= short_side:
        w, h = width, height
    elif width <= height:
        w, h = short_side, round(height * short_side / width)
    else:
        w, h = round(width * short_side / height), short_side
    return w - w % 2, h - h % 2  # yuv420p needs even sides


def transcode(data: bytes, *, short_side: int | None = None, fps: float | None = None) -> bytes:
    """Re-encode to H.264 yuv420p mp4 (short GOP, preset veryfast) for fast random access.

    ``short_side``: downscale so the short side is this many pixels (never upscale).
    ``fps``: resample to this frame rate by dropping / repeating frames (nearest in time).
    The short GOP (one key frame a second at most) keeps decord's seek-and-decode cheap.
    """
    import av

    _quiet()
    with open_video(data, "pyav") as reader:
        src = reader._container
        stream_in = reader._stream
        out_fps = Fraction(fps if fps else reader.fps or 30).limit_denominator(1001)
        width, height = _scaled_size(reader.width, reader.height, short_side)
        buf = io.BytesIO()
        with av.open(buf, mode="w", format="mp4") as dst:
            out = dst.add_stream("libx264", rate=out_fps)
            out.width, out.height, out.pix_fmt = width, height, "yuv420p"
            gop = max(1, min(int(round(float(out_fps))), 32))
            out.options = {"preset": "veryfast", "crf": "20", "g": str(gop), "bf": "0"}
            n_out = 0
            try:
                for n, frame in enumerate(src.decode(stream_in)):
                    # Emit every output frame whose timestamp falls at or before this source frame.
                    t_src = n / reader.fps if reader.fps else n / float(out_fps)
                    while n_out / float(out_fps) <= t_src + 1e-6:
                        img = frame.reformat(width=width, height=height, format="yuv420p")
                        img.pts, img.time_base = n_out, 1 / out_fps
                        dst.mux(out.encode(img))
                        n_out += 1
            except av.error.FFmpegError as err:
                raise DecodeError("decode_error", f"while transcoding: {err}") from None
            dst.mux(out.encode(None))
    if n_out == 0:
        raise DecodeError("no_frames", "nothing to transcode")
    return buf.getvalue()
