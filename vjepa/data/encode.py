"""Frames and files for the shard writer: encode frames, re-encode videos, sniff containers.

PyAV only (a core dependency), imported when a function runs, like the decoders in
vjepa.data.decode; decord and torchcodec never encode.

- :func:`encode_frames`: uint8 RGB frames -> a video container held in memory, the same
  bytes from run to run (the sample-corpus generator, env recordings, the tests);
- :func:`transcode`: re-encode to H.264 at a short side / frame rate (``vjepa shards
  --short-side`` / ``--fps``);
- :func:`sniff_video`: does a file hold a video stream (the container header only; the
  writer's folder scan takes any suffix that does).
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np

from vjepa.data.decode import DecodeError, PyAVReader, quiet_pyav

_STILL_IMAGE_DEMUXERS = ("image2", "gif", "apng")
"""FFmpeg demuxers of single pictures (plus every ``*_pipe`` one, e.g. ``png_pipe``)."""
_TEXT_DEMUXERS = ("tty", "bin", "xbin", "idf", "adf")
"""FFmpeg demuxers that render text files (ANSI art) as video: a .txt list is no video."""


def sniff_video(path: str | Path) -> str | None:
    """None when the container at ``path`` holds a video stream, else why it is not a video.

    Reads only the container header (FFmpeg's format probe through PyAV, nothing decoded), so a
    video with an unusual suffix is taken and a text file, a still image or an audio file is
    not. Whether the frames decode is the shard writer's check (it probes every video).
    """
    import av  # PyAV: a core dependency (the fallback backend); the header probe needs no decode

    try:
        with av.open(str(path), mode="r") as container:
            demuxer = container.format.name
            streams = [s for s in container.streams.video if not _is_cover_art(s)]
            codecs = {s.codec_context.name for s in streams}
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        return f"not a media file ({type(err).__name__}: {err})"
    if demuxer in _STILL_IMAGE_DEMUXERS or demuxer.endswith("_pipe"):
        return f"a still image ({demuxer})"
    if demuxer in _TEXT_DEMUXERS or (codecs and codecs <= {"ansi", "bintext", "xbin", "idf"}):
        return f"a text file (FFmpeg's {demuxer} demuxer would render it as video)"
    if not streams:
        return f"no video stream (container {demuxer})"
    return None


def _is_cover_art(stream: object) -> bool:
    """An audio file's attached picture is a 'video stream' of one frame: not a video."""
    import av

    flag = getattr(getattr(av.stream, "Disposition", None), "attached_pic", None)
    disposition = getattr(stream, "disposition", None)
    return flag is not None and disposition is not None and bool(disposition & flag)


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

    One encoder thread, explicit timestamps and, for libx264, x264's macroblock tree off
    (``mbtree=0``, unless ``options`` sets ``x264-params``), so the same frames and options give
    the same bytes from run to run; the generated corpora, and through them the demo's numbers,
    rely on it. With the macroblock tree on, this PyAV build's libx264 gave 3 to 6 different
    streams (pixels up to 35 levels apart) in 6 encodes of one 64 x 64 clip, even at one
    thread; with it off, 144 encodes of 48 clips gave one stream each (files ~1.7x larger at
    the same crf).
    """
    import av

    if codec == "libx264" and "x264-params" not in (options or {}):
        options = {**(options or {}), "x264-params": "mbtree=0"}
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

    quiet_pyav()
    if len(data) == 0:
        raise DecodeError("empty", "zero-length video bytes")
    with PyAVReader(data) as reader:
        src = reader.container
        stream_in = reader.stream
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
