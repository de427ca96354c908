"""`vjepa shards`: write videos into webdataset tar shards plus a manifest.

Each sample is ``<key>.mp4`` (the original bytes, or an H.264 re-encode with ``short_side`` /
``fps``) and ``<key>.json`` (source, label, label_name, fps, num_frames, width, height,
duration, describing the bytes actually stored). Shards are ``<prefix>-%06d.tar`` and roll over
at ``max_count`` samples or ``max_shard_size`` bytes.

Guarantees:

- Shuffled: samples are written in a seeded random order (``shuffle_seed``, default 0; None
  keeps the input order). Sorted inputs (a list file sorted by class) would otherwise give
  shards of one or two classes each, and batches drawn through a finite shuffle buffer would
  hold few classes. Keys keep the input index (``000123_name``), so a sample is traced back to
  its input line whatever the order.
- Deterministic: keys, order and shard contents follow (input order, seed), whatever
  ``workers`` is (a process pool reads / probes / re-encodes with an ordered, bounded window;
  this process alone writes). Copied videos give byte-identical shards; re-encoded ones the same keys,
  order and frames, but x264 driven through PyAV occasionally emits different bytes for the
  same input (about 2% of clips in one test), so compare decoded frames, not bytes.
- Streaming: at most ``4 * workers`` prepared videos are held in memory at any time.
- Atomic: a shard is written to ``<name>.tar.tmp`` and renamed when complete; ``manifest.json``
  is written last (also by rename), so a folder with a manifest is a complete shard set. An
  interrupted run leaves no ``.tar.tmp`` and no manifest.
- Every unusable input is skipped, counted and listed in the manifest with its reason
  (``missing``, ``unreadable``, ``empty``, ``not_video``, ``truncated``, ``no_frames``,
  ``decode_error``).
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import random
import re
import tarfile
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

from vjepa.data.decode import DecodeError, probe
from vjepa.data.encode import transcode
from vjepa.data.formats import SkippedInput, VideoItem
from vjepa.data.framecount import frame_counts
from vjepa.data.frames import DEFAULT_CRF, encode_frame_source, is_frame_source
from vjepa.errors import UsageError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "vjepa-shards/1"


@dataclass(frozen=True)
class _Prepared:
    """A worker's answer for one input: the sample to store, or why it was skipped."""

    index: int
    key: str
    data: bytes | None
    meta: dict | None
    skip: SkippedInput | None


@dataclass(frozen=True)
class FrameEncoding:
    """How frame folders and images are stored (:func:`vjepa.data.frames.input_bytes`):
    ``fps`` of the mp4, ``crf`` (None = lossless) and ``image_frames`` per image. Video files
    are copied as they are, whatever these say."""

    fps: float = 25.0
    crf: int | None = DEFAULT_CRF
    image_frames: int = 1


def sample_key(index: int, item: VideoItem, width: int = 6) -> str:
    """Unique, deterministic key: zero-padded input index + the sanitized file stem.

    webdataset groups tar members by the part of the name before the first dot, so a key has
    no dots (nor anything outside ``[A-Za-z0-9_-]``).
    """
    stem = item.key if item.key else Path(item.path).stem
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:80]
    return f"{index:0{width}d}_{safe}" if safe else f"{index:0{width}d}"


def _source_name(path: str, source_root: str | Path | None) -> str:
    """The path recorded in the json: relative to ``source_root`` when below it."""
    if source_root is None:
        return path
    try:
        return Path(path).resolve().relative_to(Path(source_root).resolve()).as_posix()
    except ValueError:
        return path


def _read_bytes(path: str) -> bytes:
    """File bytes; raises DecodeError with a skip reason for missing / unreadable files."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DecodeError("missing", "file not found") from None
    except OSError as err:  # permissions, a folder, an I/O error
        raise DecodeError("unreadable", f"{type(err).__name__}: {err.strerror or err}") from None


def _input_bytes(path: str, frames: FrameEncoding) -> bytes:
    """A frame folder or an image encoded (:func:`vjepa.data.frames.encode_frame_source`),
    any other input's own bytes (a folder that holds no frames is ``unreadable``)."""
    if not is_frame_source(path):
        return _read_bytes(path)
    opts = {"fps": frames.fps, "crf": frames.crf, "image_frames": frames.image_frames}
    return encode_frame_source(path, **opts)


def prepare_sample(
    index: int,
    item: VideoItem,
    key: str,
    short_side: int | None,
    fps: float | None,
    source: str,
    frames: FrameEncoding = FrameEncoding(),
) -> _Prepared:
    """Read (a frame folder or an image: encode), validate and optionally re-encode one video
    (runs in a worker process)."""
    try:
        data = _input_bytes(item.path, frames)
        meta = probe(data)  # validates the original: a broken input is skipped, not re-encoded
        if short_side is not None or fps is not None:
            data = transcode(data, short_side=short_side, fps=fps)
            meta = probe(data)  # the json describes the stored bytes
        # the frames that really decode: a header may overstate them (vjepa.data.framecount)
        decodable = min(meta["num_frames"], frame_counts(data, "auto").decodable)
    except DecodeError as err:
        return _Prepared(index, key, None, None, SkippedInput(source, err.reason, str(err)))
    meta = {
        "source": source,
        "label": item.label,
        "label_name": item.label_name,
        **{k: meta[k] for k in ("fps", "num_frames", "width", "height", "duration")},
    }
    if decodable != meta["num_frames"]:
        meta |= {"num_frames": decodable, "header_frames": meta["num_frames"]}
    if item.start is not None or item.end is not None:
        meta |= {"segment_start": item.start, "segment_end": item.end}
    return _Prepared(index, key, data, meta, None)


def _prepared_stream(
    jobs: Sequence[tuple[int, VideoItem, str, str]],
    short_side: int | None,
    fps: float | None,
    workers: int,
    frames: FrameEncoding = FrameEncoding(),
) -> Iterator[_Prepared]:
    """Prepared samples in input order; with ``workers > 1`` a bounded window of futures."""
    if workers <= 1:
        for index, item, key, source in jobs:
            yield prepare_sample(index, item, key, short_side, fps, source, frames)
        return
    # spawn: a forked copy of a process holding torch / decoder threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        window: deque[Future[_Prepared]] = deque()
        try:
            for index, item, key, source in jobs:
                args = (index, item, key, short_side, fps, source, frames)
                window.append(pool.submit(prepare_sample, *args))
                if len(window) >= 4 * workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for f in window:  # interrupted: drop the queued work instead of finishing it
                f.cancel()


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    """A member header with fixed mtime and owner: the same inputs give byte-identical shards."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o444
    info.uname = info.gname = "vjepa"
    return info


class _ShardSink:
    """Writes samples into size- and count-bounded shards, each renamed into place when full."""

    def __init__(self, out_dir: Path, prefix: str, max_shard_size: int, max_count: int) -> None:
        self.out_dir, self.prefix = out_dir, prefix
        self.max_shard_size, self.max_count = max_shard_size, max_count
        self.shards: list[dict] = []
        self._file: IO[bytes] | None = None
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    def _name(self) -> str:
        return f"{self.prefix}-{len(self.shards):06d}.tar"

    def write(
        self, key: str, data: bytes, meta: dict, extra: dict[str, bytes] | None = None
    ) -> None:
        """One sample: ``<key>.json``, ``<key>.mp4`` and ``<key>.<ext>`` for each ``extra``."""
        extra = extra or {}
        meta_bytes = json.dumps(meta, sort_keys=True).encode()
        # Tar overhead: a header + padding per member (512 each), then the end blocks and the
        # final padding to a full record: with it, a closed shard never exceeds the limit
        # (unless one sample alone is larger; it then gets a shard of its own).
        size = len(data) + len(meta_bytes) + 4 * 512 + tarfile.RECORDSIZE
        size += sum(len(v) + 2 * 512 for v in extra.values())
        if self._file is not None and (
            self._count >= self.max_count or self._file.tell() + size > self.max_shard_size
        ):
            self.close_shard()
        if self._tar is None:
            self._file = open(self.out_dir / (self._name() + ".tmp"), "wb")
            self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        for ext, payload in (("json", meta_bytes), ("mp4", data), *sorted(extra.items())):
            self._tar.addfile(_tar_info(f"{key}.{ext}", len(payload)), io.BytesIO(payload))
        self._count += 1

    def close_shard(self) -> None:
        """Finish the open shard (tar end blocks, fsync) and rename it into place."""
        if self._tar is None or self._file is None:
            return
        self._tar.close()  # end-of-archive blocks; a fileobj passed in stays open
        self._file.flush()
        os.fsync(self._file.fileno())  # the rename must never expose a shard still in cache
        size = self._file.tell()
        self._file.close()
        name = self._name()
        os.replace(self.out_dir / (name + ".tmp"), self.out_dir / name)
        self.shards.append({"name": name, "count": self._count, "bytes": size})
        self._tar, self._file, self._count = None, None, 0

    def abort(self) -> None:
        """Drop the half-written shard (interrupt or error)."""
        if self._file is not None:
            self._file.close()
            (self.out_dir / (self._name() + ".tmp")).unlink(missing_ok=True)
        self._tar, self._file, self._count = None, None, 0


def _prepare_out_dir(out_dir: Path, prefix: str) -> None:
    """Create ``out_dir`` and clear an earlier shard set of the same ``prefix``.

    The manifest goes first, so a re-run that dies half-way never looks complete; old shards go
    too, so a smaller re-run leaves no stale shards for a glob to pick up.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    pattern = re.compile(re.escape(prefix) + r"-\d{6,}\.tar(\.tmp)?")
    for p in sorted(out_dir.iterdir()):
        if pattern.fullmatch(p.name) and p.is_file():
            p.unlink()


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def write_shards(
    items: Sequence[VideoItem],
    out_dir: str | Path,
    *,
    prefix: str = "shard",
    max_shard_size: int = 1 << 30,
    max_count: int = 1000,
    short_side: int | None = None,
    fps: float | None = None,
    workers: int = 1,
    label_names: list[str] | None = None,
    source_root: str | Path | None = None,
    skipped: Sequence[SkippedInput] = (),
    progress: bool = True,
    shuffle_seed: int | None = 0,
    frames: FrameEncoding | None = None,
) -> dict:
    """Write ``items`` into webdataset shards in ``out_dir``; returns the manifest.

    ``short_side`` / ``fps`` re-encode (H.264, short GOP) instead of copying the bytes;
    ``workers`` processes read, probe and re-encode in parallel (output identical to 1
    worker). ``skipped``: inputs a reader already rejected, carried into the manifest.
    ``source_root``: record sources relative to it (default: the paths as given).
    ``shuffle_seed``: write the samples in the order of this seeded permutation (None: in
    input order); keys keep the input index. ``frames``: how frame folders / images are encoded
    (None: the :class:`FrameEncoding` defaults; recorded in the manifest when given).
    """
    _check_args(prefix, max_shard_size, max_count, short_side, fps, workers)
    if frames is not None and (frames.fps <= 0 or frames.image_frames < 1):
        raise UsageError(f"frame fps must be > 0 and image frames >= 1, got {frames}")
    if frames is not None and frames.crf is not None and not 0 <= frames.crf <= 51:
        raise UsageError(f"crf must be in 0..51 (or lossless), got {frames.crf}")
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, prefix)
    width = max(6, len(str(max(len(items) - 1, 0))))
    jobs = [
        (i, item, sample_key(i, item, width), _source_name(item.path, source_root))
        for i, item in enumerate(items)
    ]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(jobs)  # Mersenne Twister: the same on every platform
    sink = _ShardSink(out_dir, prefix, max_shard_size, max_count)
    all_skipped = list(skipped)
    bar = tqdm(total=len(jobs), unit="video", desc="shards", disable=not progress)
    try:
        stream = _prepared_stream(jobs, short_side, fps, workers, frames or FrameEncoding())
        for prep in stream:
            if prep.skip is not None:
                _record_skip(all_skipped, prep.skip)
            else:
                sink.write(prep.key, prep.data, prep.meta)
            bar.update(1)
        sink.close_shard()
    except BaseException:  # KeyboardInterrupt included: never leave a half shard behind
        sink.abort()
        raise
    finally:
        bar.close()
    manifest = _manifest(sink.shards, all_skipped, label_names, len(items), short_side, fps)
    manifest["shuffle_seed"] = shuffle_seed
    if frames is not None:
        manifest["frame_encoding"] = asdict(frames)
    _write_json_atomic(out_dir / MANIFEST_NAME, manifest)
    return manifest


def write_sample_shards(
    samples: Iterable[tuple[str, bytes, dict, dict[str, bytes]]],
    out_dir: str | Path,
    *,
    num_inputs: int,
    prefix: str = "shard",
    max_shard_size: int = 1 << 30,
    max_count: int = 1000,
    skipped: Sequence[SkippedInput] = (),
    extra_manifest: dict | None = None,
) -> dict:
    """Write ready samples ``(key, mp4 bytes, json meta, {ext: bytes})`` into shards.

    The same sink, atomic renames and manifest as :func:`write_shards`, for samples made in
    this process (e.g. ``vjepa collect``'s env trajectories with ``actions.npy`` members).
    ``extra_manifest`` adds keys to the manifest (it never replaces the standard ones).
    """
    _check_args(prefix, max_shard_size, max_count, None, None, 1)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, prefix)
    sink = _ShardSink(out_dir, prefix, max_shard_size, max_count)
    try:
        for key, data, meta, extra in samples:
            sink.write(key, data, meta, extra)
        sink.close_shard()
    except BaseException:  # never leave a half shard behind
        sink.abort()
        raise
    manifest = _manifest(sink.shards, list(skipped), None, num_inputs, None, None)
    manifest |= {k: v for k, v in (extra_manifest or {}).items() if k not in manifest}
    _write_json_atomic(out_dir / MANIFEST_NAME, manifest)
    return manifest


def _check_args(
    prefix: str,
    max_shard_size: int,
    max_count: int,
    short_side: int | None,
    fps: float | None,
    workers: int,
) -> None:
    """User errors, raised before any file is touched."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
        raise UsageError(f"shard prefix must match [A-Za-z0-9_-]+, got {prefix!r}")
    checks = [
        ("max_shard_size", max_shard_size, max_shard_size > 0),
        ("max_count", max_count, max_count >= 1),
        ("short_side", short_side, short_side is None or short_side >= 2),
        ("fps", fps, fps is None or fps > 0),
        ("workers", workers, workers >= 1),
    ]
    for name, value, ok in checks:
        if not ok:
            raise UsageError(f"{name} must be positive, got {value!r}")


def _record_skip(skipped: list[SkippedInput], skip: SkippedInput) -> None:
    """The one handler for bad inputs: count (in the manifest) and log."""
    skipped.append(skip)
    log.info("skipped %s (%s): %s", skip.source, skip.reason, skip.detail)


def _manifest(
    shards: list[dict],
    skipped: list[SkippedInput],
    label_names: list[str] | None,
    num_inputs: int,
    short_side: int | None,
    fps: float | None,
) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "count": sum(s["count"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "shards": shards,
        "label_names": label_names,
        "num_classes": len(label_names) if label_names is not None else None,
        "num_inputs": num_inputs,
        "transcode": {"short_side": short_side, "fps": fps},
        "skipped_by_reason": dict(sorted(Counter(s.reason for s in skipped).items())),
        "skipped": [asdict(s) for s in skipped],
    }


def read_manifest(out_dir: str | Path) -> dict:
    """The manifest of a complete shard folder (FileNotFoundError if it has none)."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {out_dir}: not a complete shard set")
    return json.loads(path.read_text())


def format_summary(manifest: dict) -> str:
    """A one-screen summary: shards, samples, classes and skipped inputs by reason."""
    shards = manifest["shards"]
    lines = [
        f"wrote {manifest['count']} samples in {len(shards)} shards "
        f"({manifest['bytes'] / 1e6:.1f} MB) from {manifest['num_inputs']} inputs",
    ]
    if shards:
        lines.append(f"  {shards[0]['name']} .. {shards[-1]['name']}")
    if manifest["num_classes"] is not None:
        lines.append(f"  {manifest['num_classes']} classes")
    seed = manifest.get("shuffle_seed")
    lines.append("  input order kept" if seed is None else f"  order shuffled (seed {seed})")
    skipped = manifest["skipped"]
    if skipped:
        by_reason = ", ".join(f"{r}: {n}" for r, n in manifest["skipped_by_reason"].items())
        lines.append(f"  skipped {len(skipped)} ({by_reason}); first ones:")
        lines += [f"    {s['reason']:<12} {s['source']}" for s in skipped[:5]]
        lines.append("  (full list in manifest.json)")
    return "\n".join(lines)


def print_summary(manifest: dict) -> None:
    print(format_summary(manifest))
