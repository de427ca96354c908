"""The stages of a data stream, shared by the pretraining and the evaluation streams.

webdataset-style: each stage is a small function or generator over samples, composed by the
streams in vjepa.data.loader. Per (rank, worker) slot::

    worker_slot, worker_init           which DataLoader worker runs this copy of the stream;
                                       its set-up (one thread, a fixed mmap threshold)
    errors_to_main, raise_worker_error a UsageError in a worker reaches the main process as
                                       the same one line (no worker traceback)
    epoch_samples / resampled_samples  shard URLs -> raw tar samples {"__key__", "mp4", "json"}
                                       (split over slots, seeded shard order + shuffle buffer;
                                       remote shards retried: vjepa.data.remote)
    decode_clips                       parse_sample, then decode ONLY the sampled frames
                                       -> (key, label, uint8 clips [T, H, W, 3])
    (the stream's transform)           crops / flips (vjepa.data.augment) -> Clips
    batched                            Clips -> Rows of ``batch_size`` samples
    collate_video                      Rows' clips -> one [N, C, T, H, W] tensor

Seeds. Every random draw takes a generator seeded by :func:`seed_for` from the run seed, a
domain tag (which stream of randomness) and then (rank, worker, step) in that order:

- shard order of an epoch: (seed, SHARDS, epoch), the same on every slot (keeps the split);
- shuffle buffer: (seed, SHUFFLE, rank, worker, epoch);
- augmentation of raw sample i of an epoch: (seed, AUG, rank, worker, epoch, i), except the
  evaluation stream's, which keeps its historical (seed, AUG, epoch, rank, worker, i):
  :func:`augment_generator`'s ``epoch_first``;
- masks of global batch b: (seed, MASK, rank, b); resampling: (seed, RESAMPLE, rank, worker,
  batches at the start).
"""

from __future__ import annotations

import ctypes
import json
import logging
import random
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import get_worker_info

from vjepa.config import DataConfig, RetryConfig
from vjepa.data.augment import normalize_
from vjepa.data.clips import clip_indices
from vjepa.data.decode import DecodeError, open_video
from vjepa.data.errors import DataErrors
from vjepa.data.formats import VIDEO_EXTENSIONS
from vjepa.data.remote import shard_samples
from vjepa.data.shards import slot_plan
from vjepa.data.writer import read_manifest
from vjepa.errors import UsageError

log = logging.getLogger("vjepa.data")

VIDEO_EXTS: tuple[str, ...] = tuple(e.lstrip(".") for e in VIDEO_EXTENSIONS)
"""Sample members read as the video: any video container suffix (vjepa.data.formats), in any
case, first match in this order wins (our shards use ``mp4``; the decoders go by content)."""

# Domain tags keep the seeds of different random streams apart (FINETUNE: fine-tuning's
# per-batch mixup / CutMix / drop path, HEAD: a head's init, PROBE: the online probe).
SHARDS, SHUFFLE, AUG, MASK, RESAMPLE, FINETUNE, HEAD, PROBE = 1, 2, 3, 4, 5, 6, 7, 8
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)


# ----------------------------------------------------------------------------------------
# Seeds
# ----------------------------------------------------------------------------------------


def seed_for(*parts: int) -> int:
    """A 63-bit seed mixed from non-negative integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def generator(*parts: int) -> torch.Generator:
    """A torch generator seeded by :func:`seed_for` of ``parts``."""
    return torch.Generator().manual_seed(seed_for(*parts))


def augment_generator(
    seed: int, rank: int, worker: int, epoch: int, index: int, *, epoch_first: bool = False
) -> torch.Generator:
    """The generator that places the clips of raw sample ``index`` of ``epoch`` and crops them.

    The one order is (seed, rank, worker, step), the step being (epoch, index).
    ``epoch_first`` keeps the evaluation stream's historical order (seed, epoch, rank, worker,
    index), so that probe batches, and so probe results, stay what they were for a seed.
    """
    if epoch_first:
        return generator(seed, AUG, epoch, rank, worker, index)
    return generator(seed, AUG, rank, worker, epoch, index)


# ----------------------------------------------------------------------------------------
# Raw samples of one slot
# ----------------------------------------------------------------------------------------


def worker_slot() -> tuple[int, int]:
    """(worker id, number of workers) of the DataLoader worker running this; (0, 1) outside."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


WORKER_ERROR = "__usage_error__"
"""The key of the last item a worker sends when its stream raised a UsageError."""


def errors_to_main(items: Iterator[dict]) -> Iterator[dict]:
    """``items``; in a DataLoader worker, a :class:`UsageError` they raise (no credentials, an
    unreadable shard under ``data.retry.on_failure: stop``, no sample in an epoch) becomes one
    last item ``{WORKER_ERROR: (type, message)}`` that :func:`raise_worker_error` raises again
    in the main process: torch would re-raise it with the worker's traceback in its message."""
    if get_worker_info() is None:
        yield from items
        return
    try:
        yield from items
    except UsageError as err:
        yield {WORKER_ERROR: (type(err), str(err))}


def raise_worker_error(item: dict) -> None:
    """Raise the error of a worker's ``WORKER_ERROR`` item: its class, its one-line message."""
    kind, message = item[WORKER_ERROR]
    err = kind.__new__(kind)
    UsageError.__init__(err, message)  # whatever the class's own __init__ takes
    raise err


def _fixed_mmap_threshold(nbytes: int = 1 << 20) -> None:
    """Serve allocations >= ``nbytes`` from mmap, always (glibc only; a no-op elsewhere).

    After a large buffer is freed glibc raises its mmap threshold (up to 32 MiB), so the next
    decoded clips (10-50 MB each) come from the heap, which fragments: a worker's RSS then
    climbs by ~700 MB before it levels off (measured with tools/bench_data.py on 720p video).
    A fixed threshold returns every frame buffer to the OS on free and keeps RSS flat.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (macOS, musl): nothing to tune
    libc.mallopt(_M_MMAP_THRESHOLD, nbytes)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one intra-op thread (the workers are the parallelism)."""
    torch.set_num_threads(1)
    _fixed_mmap_threshold()


def slot_samples(
    urls: list[str],
    *,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
    shard_seed: int | None,
    shuffle_seed: int | None,
    shuffle_buffer: int,
    errors: DataErrors,
    retry: RetryConfig | None = None,
) -> Iterator[dict]:
    """One pass over this slot's share of ``urls`` as raw webdataset samples (undecoded);
    remote shards are read with the retries of ``retry`` (``data.retry``)."""
    urls = list(urls)
    if shard_seed is not None:
        random.Random(shard_seed).shuffle(urls)  # same order on every slot: keeps the split
    plan = slot_plan(urls, rank=rank, world_size=world_size, worker=worker, num_workers=num_workers)
    samples = shard_samples(plan.urls, errors, retry)
    if plan.stride > 1:
        samples = islice(samples, plan.offset, None, plan.stride)
    if shuffle_seed is not None and shuffle_buffer > 1:
        shuffle = wds.shuffle(
            shuffle_buffer, initial=shuffle_buffer, rng=random.Random(shuffle_seed)
        )
        samples = shuffle(samples)
    return iter(samples)


def epoch_samples(
    urls: list[str],
    *,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
    shuffle_buffer: int,
    shuffled: bool,
    errors: DataErrors,
    retry: RetryConfig | None = None,
) -> Iterator[dict]:
    """Epoch ``epoch`` of this slot: shards and samples shuffled by (seed, epoch), or listed.

    ``shuffled=False`` reads the shards in their listed order without a shuffle buffer
    (evaluation passes: deterministic whatever the seed).
    """
    return slot_samples(
        urls,
        rank=rank,
        world_size=world_size,
        worker=worker,
        num_workers=num_workers,
        shard_seed=seed_for(seed, SHARDS, epoch) if shuffled else None,
        shuffle_seed=seed_for(seed, SHUFFLE, rank, worker, epoch) if shuffled else None,
        shuffle_buffer=shuffle_buffer,
        errors=errors,
        retry=retry,
    )


def resampled_samples(
    urls: list[str],
    *,
    seed: int,
    shuffle_buffer: int,
    errors: DataErrors,
    retry: RetryConfig | None = None,
) -> Iterator[dict]:
    """Endless samples from shards drawn with replacement (seeded, so reproducible)."""
    shards = wds.ResampledShards(urls, seed=seed, worker_seed=lambda: 0, deterministic=True)
    samples = shard_samples((d["url"] for d in shards), errors, retry)
    if shuffle_buffer > 1:
        shuffle = wds.shuffle(shuffle_buffer, initial=shuffle_buffer, rng=random.Random(seed))
        samples = shuffle(samples)
    return iter(samples)


def corpus_size(urls: list[str]) -> tuple[int, int] | None:
    """(samples, bytes) of local shards, from their folders' manifest.json; else None.

    None as soon as one shard is remote or not listed in a manifest (written by vjepa shards).
    """
    listed: dict[Path, dict[str, dict]] = {}
    samples = size = 0
    for url in urls:
        path = Path(url)
        if ":" in url.split("/", 1)[0] or not path.is_file():  # pipe:, http(s):, s3: ...
            return None
        if path.parent not in listed:
            try:
                shards = read_manifest(path.parent)["shards"]
                listed[path.parent] = {s["name"]: s for s in shards}
            except (FileNotFoundError, ValueError, KeyError, TypeError):  # none, or not ours
                listed[path.parent] = {}
        entry = listed[path.parent].get(path.name)
        if entry is None:
            return None
        samples, size = samples + int(entry["count"]), size + int(entry["bytes"])
    return samples, size


def shuffle_buffer_for(urls: list[str], cfg: DataConfig) -> int:
    """The shuffle buffer a stream uses: ``cfg.shuffle_buffer``, or the whole corpus.

    A finite buffer over shards written in a sorted order (a list file sorted by class) gives
    batches of a few neighbouring classes. When the manifests say the corpus totals at most
    ``cfg.shuffle_cover_mb`` MB, the buffer grows to the corpus size: every sample can land in
    every batch (i.i.d. within an epoch). Memory: each worker holds its share, undecoded.
    """
    if cfg.shuffle_buffer <= 1 or cfg.shuffle_cover_mb <= 0:
        return cfg.shuffle_buffer  # no shuffling asked for, or covering disabled
    known = corpus_size(urls)
    if known is None or known[1] > cfg.shuffle_cover_mb * 1e6 or known[0] <= cfg.shuffle_buffer:
        return cfg.shuffle_buffer
    log.info("shuffle buffer %d -> %d: it covers the whole corpus", cfg.shuffle_buffer, known[0])
    return known[0]


# ----------------------------------------------------------------------------------------
# One sample: tar members -> clips
# ----------------------------------------------------------------------------------------


def parse_sample(sample: dict, errors: DataErrors) -> tuple[str, bytes, int] | None:
    """(key, video bytes, label or -1) of a tar sample, or None after counting why not."""
    parsed = _parse(sample, errors)
    return parsed[:3] if parsed is not None else None


def _parse(sample: dict, errors: DataErrors) -> tuple[str, bytes, int, dict] | None:
    """parse_sample plus the sample's ``<key>.json`` object."""
    key = str(sample.get("__key__", "?"))
    members = {k.lower(): k for k in sample if not k.startswith("__")}
    video = next((sample[members[e]] for e in VIDEO_EXTS if e in members), None)
    if video is None:
        errors.count(
            "missing_video", key, f"members: {sorted(k for k in sample if not k.startswith('__'))}"
        )
        return None
    if "json" not in sample:
        errors.count("missing_json", key)
        return None
    try:
        meta = json.loads(sample["json"])
        if not isinstance(meta, dict):
            raise ValueError(f"json is a {type(meta).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as err:
        errors.count("bad_json", key, err)
        return None
    label = meta.get("label")
    return key, video, label if isinstance(label, int) and not isinstance(label, bool) else -1, meta


def _frames(reader_frames: int, meta: dict) -> int:
    """Frames to sample clips from: the reader's count, capped by the verified decodable count
    the shard writer stored (``num_frames``; a header may overstate it, vjepa.data.framecount)."""
    stored = meta.get("num_frames")
    if isinstance(stored, int) and not isinstance(stored, bool) and 0 < stored < reader_frames:
        return stored
    return reader_frames


def decode_clips(
    sample: dict,
    *,
    cfg: DataConfig,
    num_clips: int,
    mode: Literal["random", "uniform", "center"],
    short_video: Literal["pad", "skip"],
    generator: torch.Generator,
    errors: DataErrors,
) -> tuple[str, int, list[np.ndarray]] | None:
    """(key, label, uint8 clips ``[T, H, W, 3]``) of a raw sample, or None after counting why not.

    :func:`parse_sample`, then one decoder open and one batched decode of only the frames of
    the ``num_clips`` clips that :func:`vjepa.data.clips.clip_indices` places.
    """
    parsed = _parse(sample, errors)
    if parsed is None:
        return None
    key, video, label, meta = parsed
    try:
        with open_video(video, cfg.decoder) as reader:
            n = _frames(reader.num_frames, meta)  # min(reader, stored decodable count)
            if n < cfg.min_frames:
                errors.count("too_short", key, f"{n} < min_frames {cfg.min_frames}")
                return None
            idx = clip_indices(
                n,
                frames_per_clip=cfg.frames_per_clip,
                frame_step=cfg.frame_step,
                num_clips=num_clips,
                mode=mode,
                generator=generator,
                video_fps=reader.fps or None,
                target_fps=cfg.fps,
                short_video=short_video,
            )
            if idx is None:
                errors.count("too_short", key, f"{n} frames")
                return None
            frames = reader.get_frames(np.concatenate(idx))  # [num_clips * T, H, W, 3]
            for reason in reader.fallbacks:
                errors.fallback(reason, key)
    except DecodeError as err:
        errors.count(err.reason, key, err)
        return None
    return key, label, np.split(frames, num_clips)


# ----------------------------------------------------------------------------------------
# Samples -> batches
# ----------------------------------------------------------------------------------------


class Clips(NamedTuple):
    """One good sample, transformed: raw ``index`` of ``epoch``, and its batch rows."""

    epoch: int
    index: int
    key: str
    label: int
    rows: list[torch.Tensor]  # one batch row each: [C, T, H, W] clips, or [V, C, T, S, S] views


class Rows:
    """Batch rows being gathered in a worker."""

    def __init__(self) -> None:
        self.videos: list[torch.Tensor] = []
        self.labels: list[int] = []
        self.keys: list[str] = []
        self.samples = 0

    def add(self, key: str, label: int, clips: list[torch.Tensor]) -> None:
        self.videos.extend(clips)
        self.labels.extend([label] * len(clips))
        self.keys.extend([key] * len(clips))
        self.samples += 1


def batched(
    items: Iterable[Clips], batch_size: int, *, partial: bool
) -> Iterator[tuple[Rows, Clips]]:
    """(rows of ``batch_size`` samples, the last sample in them); ``partial``: the last,
    smaller batch too."""
    rows, last = Rows(), None
    for item in items:
        rows.add(item.key, item.label, item.rows)
        last = item
        if rows.samples == batch_size:
            yield rows, item
            rows = Rows()
    if partial and rows.samples:
        yield rows, last


def collate_video(clips: list[torch.Tensor], *, normalized: bool) -> torch.Tensor:
    """uint8 clips ``[C, T, H, W]`` -> one batch ``[N, C, T, H, W]``, float normalised or uint8.

    Inside a loader worker the batch is allocated in shared memory and filled in place, so
    handing it to the main process copies nothing (the default path would stack, then copy
    into shared memory, and normalise each clip through temporaries: ~25 ms per clip more).
    """
    shape = (len(clips), *clips[0].shape)
    out = torch.empty(shape, dtype=torch.float32 if normalized else torch.uint8)
    if get_worker_info() is not None:
        out.share_memory_()
    for row, clip in zip(out, clips):
        row.copy_(clip)  # converts uint8 -> float32 on the fly
    return normalize_(out) if normalized else out
