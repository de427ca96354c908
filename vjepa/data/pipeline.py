"""Streaming loaders: webdataset tar shards -> decoded, augmented, masked batches.

Per (rank, worker) slot the stream is

    shard URLs (shuffled per epoch, split over slots: vjepa.data.shards.slot_plan)
      -> webdataset ``tarfile_samples`` (tar -> {"__key__", "mp4", "json"})
      -> seeded shuffle buffer (``data.shuffle_buffer``; the whole corpus when its manifest
         says it fits in ``data.shuffle_cover_mb``: :func:`shuffle_buffer_for`)
      -> decode ONLY the frames of the sampled clips (one decoder open per video)
      -> one crop + flip per clip -> batch -> masks (``mask_fn``, run here, in the worker)

Two training modes (``data.resampled``):

- exact (default): an endless sequence of epochs; in each epoch every sample is seen exactly
  once across ranks x workers. The stream is a pure function of (seed, rank, worker): the shard
  order is seeded by (seed, epoch), the shuffle buffer by (seed, rank, worker, epoch), the
  augmentation of sample i by (seed, rank, worker, epoch, i) and the masks of global batch b by
  (seed, rank, b). Every batch carries ``data_state``; resuming from :func:`loader_state`
  skips the consumed samples without decoding them and continues bit for bit.
- resampled: shards are drawn with replacement forever (webdataset ``ResampledShards``), for
  very large corpora. Resuming re-seeds with the batch count: resampled by design, so the
  continuation is statistically (not bitwise) equivalent.

Global batch b of a rank comes from worker ``b % num_workers``; the loader re-orders the
workers' output by that index so a restart (which always begins at worker 0) stays in order.

With ``num_clips > 1`` every clip of a video becomes its own batch row: ``video`` has
``batch_size * num_clips`` rows (clips of one video are adjacent) and ``key``/``label`` repeat.

Resuming (exact mode), in the training loop::

    last = {}                                   # worker -> data_state of its last USED batch
    for step, batch in enumerate(loader):
        ...                                     # train on the batch
        last[batch["data_state"]["worker"]] = batch["data_state"]
    state = loader_state(step + 1, last)        # JSON-friendly; save one per rank
    loader = make_pretrain_loader(..., start=state)   # continues bit for bit

Each rank has its own state (gather them, e.g. ``accelerator.gather_object``); the worker
count must not change between the runs (a ConfigError says so).

Bad samples never stop the stream: :class:`DataErrors` counts them by reason (``empty``,
``not_video``, ``truncated``, ``no_frames``, ``decode_error``, ``too_short``,
``missing_video``, ``missing_json``, ``bad_json``, ``bad_shard``), logs the first of each
reason and a periodic summary, and the counts ride along in every batch. A sample that the
first decoder backend cannot read but a later one can (``data.decoder=auto``) is no error: it
is counted as a decoder fallback (``decord_decode_error``, ...; ``decoder_fallbacks`` in every
batch).
"""

from __future__ import annotations

import ctypes
import json
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import count, islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import tarfile_samples

from vjepa.config import ConfigError, DataConfig
from vjepa.data.augment import eval_transform, normalize_, train_transform
from vjepa.data.backends import backend_chain
from vjepa.data.clips import clip_indices
from vjepa.data.decode import DecodeError, open_video
from vjepa.data.formats import VIDEO_EXTENSIONS
from vjepa.data.shards import expand_urls, slot_plan
from vjepa.data.writer import read_manifest
from vjepa.errors import UsageError

log = logging.getLogger("vjepa.data")

MaskFn = Callable[[int, torch.Generator], dict]
VIDEO_EXTS: tuple[str, ...] = tuple(e.lstrip(".") for e in VIDEO_EXTENSIONS)
"""Sample members read as the video: any video container suffix (vjepa.data.formats), in any
case, first match in this order wins (our shards use ``mp4``; the decoders go by content)."""

# Domain tags keep the seeds of different random streams apart.
_SHARDS, _SHUFFLE, _AUG, _MASK, _RESAMPLE = 1, 2, 3, 4, 5
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)


class DataError(UsageError):
    """The data cannot feed training at all (e.g. no decodable sample in an epoch): exit 2."""


def seed_for(*parts: int) -> int:
    """A 63-bit seed mixed from non-negative integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_for(*parts))


# ----------------------------------------------------------------------------------------
# Error handling
# ----------------------------------------------------------------------------------------


class DataErrors:
    """The one data-error handler: counts skipped samples by reason and logs them sparingly.

    The first occurrence of each reason is logged with the sample key and message; after that
    a summary every ``summary_every`` errors. It never raises and never sleeps.
    """

    def __init__(self, where: str = "", summary_every: int = 100) -> None:
        self.where = where
        self.summary_every = summary_every
        self.counts: dict[str, int] = {}
        self.total = 0
        self.fallbacks: dict[str, int] = {}  # decoder fallbacks that succeeded: not errors

    def count(self, reason: str, key: str = "?", err: BaseException | str | None = None) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.total += 1
        if self.counts[reason] == 1:
            log.warning("%sskipping sample %s: %s (%s)", self.where, key, reason, err or "")
        elif self.total % self.summary_every == 0:
            log.info("%sdata errors so far: %s", self.where, dict(sorted(self.counts.items())))

    def fallback(self, reason: str, key: str = "?") -> None:
        """A sample decoded by a later backend after ``reason`` (``<backend>_<why>``)."""
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        if self.fallbacks[reason] == 1:
            log.warning("%ssample %s decoded after a decoder fallback: %s", self.where, key, reason)

    def webdataset_handler(self, exn: Exception) -> bool:
        """webdataset ``handler=``: an unreadable shard or tar member is counted, then skipped."""
        self.count("bad_shard", "?", exn)
        return True

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)


# ----------------------------------------------------------------------------------------
# One sample: tar members -> clips
# ----------------------------------------------------------------------------------------


def _parse_sample(sample: dict, errors: DataErrors) -> tuple[str, bytes, int] | None:
    """(key, video bytes, label or -1) of a tar sample, or None after counting why not."""
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
    return key, video, label if isinstance(label, int) and not isinstance(label, bool) else -1


def _decode_clips(
    video: bytes,
    key: str,
    *,
    cfg: DataConfig,
    num_clips: int,
    mode: Literal["random", "uniform", "center"],
    short_video: Literal["pad", "skip"],
    generator: torch.Generator,
    errors: DataErrors,
) -> list[np.ndarray] | None:
    """uint8 clips ``[T, H, W, 3]`` of one video (one decoder open, one batched decode)."""
    try:
        with open_video(video, cfg.decoder) as reader:
            if reader.num_frames < cfg.min_frames:
                errors.count("too_short", key, f"{reader.num_frames} < min_frames {cfg.min_frames}")
                return None
            idx = clip_indices(
                reader.num_frames,
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
                errors.count("too_short", key, f"{reader.num_frames} frames")
                return None
            frames = reader.get_frames(np.concatenate(idx))  # [num_clips * T, H, W, 3]
            for reason in reader.fallbacks:
                errors.fallback(reason, key)
    except DecodeError as err:
        errors.count(err.reason, key, err)
        return None
    return np.split(frames, num_clips)


# ----------------------------------------------------------------------------------------
# Sample streams of one slot
# ----------------------------------------------------------------------------------------


def _worker_slot() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _slot_samples(
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
) -> Iterator[dict]:
    """One pass over this slot's share of ``urls`` as raw webdataset samples (undecoded)."""
    urls = list(urls)
    if shard_seed is not None:
        random.Random(shard_seed).shuffle(urls)  # same order on every slot: keeps the split
    plan = slot_plan(urls, rank=rank, world_size=world_size, worker=worker, num_workers=num_workers)
    samples = tarfile_samples(({"url": u} for u in plan.urls), handler=errors.webdataset_handler)
    if plan.stride > 1:
        samples = islice(samples, plan.offset, None, plan.stride)
    if shuffle_seed is not None and shuffle_buffer > 1:
        shuffle = wds.shuffle(
            shuffle_buffer, initial=shuffle_buffer, rng=random.Random(shuffle_seed)
        )
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


def _resampled_samples(
    urls: list[str], *, seed: int, shuffle_buffer: int, errors: DataErrors
) -> Iterator[dict]:
    """Endless samples from shards drawn with replacement (seeded, so reproducible)."""
    shards = wds.ResampledShards(urls, seed=seed, worker_seed=lambda: 0, deterministic=True)
    samples = tarfile_samples(iter(shards), handler=errors.webdataset_handler)
    if shuffle_buffer > 1:
        shuffle = wds.shuffle(shuffle_buffer, initial=shuffle_buffer, rng=random.Random(seed))
        samples = shuffle(samples)
    return iter(samples)


# ----------------------------------------------------------------------------------------
# Pretraining
# ----------------------------------------------------------------------------------------


class _Rows:
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


def _collate_video(clips: list[torch.Tensor], *, normalized: bool) -> torch.Tensor:
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


class PretrainStream(IterableDataset):
    """The per-worker batch stream of :func:`make_pretrain_loader` (see the module docstring)."""

    def __init__(
        self,
        urls: list[str],
        cfg: DataConfig,
        *,
        mask_fn: MaskFn | None,
        seed: int,
        rank: int,
        world_size: int,
        start: dict | None,
    ) -> None:
        super().__init__()
        self.urls, self.cfg, self.mask_fn = urls, cfg, mask_fn
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start = start or {"batches": 0, "workers": {}}

    def _resume_point(self, worker: int, num_workers: int) -> tuple[int, int, int]:
        """(first global batch index, epoch, raw samples to skip) for this worker."""
        batches = int(self.start.get("batches", 0))
        first = batches + (worker - batches) % num_workers
        state = {int(k): v for k, v in self.start.get("workers", {}).items()}.get(worker, {})
        return first, int(state.get("epoch", 0)), int(state.get("consumed", 0))

    def _batch(self, rows: _Rows, batch: int, state: dict, errors: DataErrors) -> dict:
        video = _collate_video(rows.videos, normalized=not self.cfg.normalize_on_device)
        out: dict[str, Any] = {
            "video": video,
            "label": torch.tensor(rows.labels, dtype=torch.long),  # [B * num_clips]
            "key": rows.keys,
        }
        if self.mask_fn is not None:
            out.update(self.mask_fn(video.shape[0], _generator(self.seed, _MASK, self.rank, batch)))
        out["data_errors"] = errors.as_dict()
        out["decoder_fallbacks"] = dict(errors.fallbacks)
        out["data_state"] = state
        return out

    def _clips(self, sample: dict, gen: torch.Generator, errors: DataErrors) -> tuple | None:
        parsed = _parse_sample(sample, errors)
        if parsed is None:
            return None
        key, video, label = parsed
        cfg = self.cfg
        raw = _decode_clips(
            video,
            key,
            cfg=cfg,
            num_clips=cfg.num_clips,
            mode="random",
            short_video=cfg.short_video,
            generator=gen,
            errors=errors,
        )
        if raw is None:
            return None
        clips = [
            train_transform(
                c,
                crop_size=cfg.crop_size,
                scale=cfg.random_resize_scale,
                aspect=cfg.random_resize_aspect,
                hflip=cfg.hflip,
                generator=gen,
                normalize=False,  # done per batch, in place: _collate_video
            )
            for c in raw
        ]
        return key, label, clips

    def _epochs(
        self, worker: int, num_workers: int, errors: DataErrors
    ) -> Iterator[tuple[int, int, dict]]:
        """(epoch, raw index, sample) forever, starting at the resume point, skipping undecoded."""
        _, first_epoch, skip = self._resume_point(worker, num_workers)
        if self.cfg.resampled:
            reseed = int(self.start.get("batches", 0))  # fresh randomness per resume
            seed = seed_for(self.seed, _RESAMPLE, self.rank, worker, reseed)
            samples = _resampled_samples(
                self.urls, seed=seed, shuffle_buffer=self.cfg.shuffle_buffer, errors=errors
            )
            for i, sample in enumerate(samples):
                yield reseed, i, sample
            return
        for epoch in count(first_epoch):
            samples = _slot_samples(
                self.urls,
                rank=self.rank,
                world_size=self.world_size,
                worker=worker,
                num_workers=num_workers,
                shard_seed=seed_for(self.seed, _SHARDS, epoch),
                shuffle_seed=seed_for(self.seed, _SHUFFLE, self.rank, worker, epoch),
                shuffle_buffer=self.cfg.shuffle_buffer,
                errors=errors,
            )
            n = -1
            for n, sample in enumerate(samples):
                if epoch == first_epoch and n < skip:
                    continue  # consumed before the restart: not decoded again
                yield epoch, n, sample
            if n < 0:
                raise DataError(
                    f"rank {self.rank} worker {worker} got no samples in epoch {epoch} from "
                    f"{len(self.urls)} shard(s): fewer samples than ranks x workers?"
                )

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = _worker_slot()
        if self.start.get("num_workers", num_workers) != num_workers:
            raise ConfigError(
                f"resuming with data.num_workers={num_workers}, but the saved loader state is for "
                f"{self.start['num_workers']} workers; exact resume needs the same count"
            )
        errors = DataErrors(where=f"[rank {self.rank} worker {worker}] ")
        batch, start_epoch, skipped = self._resume_point(worker, num_workers)
        rows, good_in_epoch, epoch_seen = _Rows(), 0, None
        for epoch, i, sample in self._epochs(worker, num_workers, errors):
            if epoch != epoch_seen:
                # An epoch resumed part-way may legitimately have no good sample left.
                whole = epoch_seen is not None and (epoch_seen != start_epoch or skipped == 0)
                if whole and good_in_epoch == 0 and not self.cfg.resampled:
                    raise DataError(
                        f"no decodable sample in epoch {epoch_seen} (errors: {errors.as_dict()})"
                    )
                epoch_seen, good_in_epoch = epoch, 0
            got = self._clips(
                sample, _generator(self.seed, _AUG, self.rank, worker, epoch, i), errors
            )
            if got is None:
                continue
            good_in_epoch += 1
            rows.add(*got)
            if rows.samples == self.cfg.batch_size:
                state = {
                    "batch": batch,
                    "worker": worker,
                    "epoch": epoch,
                    "consumed": i + 1,
                    "num_workers": num_workers,
                }
                yield self._batch(rows, batch, state, errors)
                rows, batch = _Rows(), batch + num_workers


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


def _worker_init(worker_id: int) -> None:
    # One intra-op thread per worker: the workers are the parallelism.
    torch.set_num_threads(1)
    _fixed_mmap_threshold()


def _data_loader(dataset: IterableDataset, num_workers: int) -> DataLoader:
    """A DataLoader over a stream that batches itself (batches are built in the workers)."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        pin_memory=torch.cuda.is_available(),  # faster host -> GPU copies
    )


class _OrderedLoader:
    """Iterates a DataLoader over a batch stream and yields batches in global batch order."""

    def __init__(self, dataset: PretrainStream, num_workers: int) -> None:
        self.dataset = dataset
        self.num_workers = num_workers

    def __iter__(self) -> Iterator[dict]:
        loader = _data_loader(self.dataset, self.num_workers)
        expected = int(self.dataset.start.get("batches", 0))
        pending: dict[int, dict] = {}
        for item in loader:
            pending[item["data_state"]["batch"]] = item
            while expected in pending:  # at most num_workers batches wait here
                yield pending.pop(expected)
                expected += 1


def make_pretrain_loader(
    data_cfg: DataConfig,
    *,
    mask_fn: MaskFn | None,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    start: dict | None = None,
) -> Iterable[dict]:
    """Endless training batches for one rank (see the module docstring for the contract).

    Each batch: ``video`` [B*num_clips, C, T, H, W] float32 normalised (uint8 when
    ``data_cfg.normalize_on_device``), ``label`` Long (-1 = none), ``key`` list[str], the
    entries of ``mask_fn(rows, generator)``, ``data_errors`` and ``data_state``.
    ``start`` is :func:`loader_state` of a previous run of this rank.
    """
    urls = expand_urls(data_cfg.shards)
    backend_chain(data_cfg.decoder)  # an unusable decoder fails here; says which one is used
    data_cfg = replace(data_cfg, shuffle_buffer=shuffle_buffer_for(urls, data_cfg))
    stream = PretrainStream(
        urls, data_cfg, mask_fn=mask_fn, seed=seed, rank=rank, world_size=world_size, start=start
    )
    return _OrderedLoader(stream, data_cfg.num_workers)


def loader_state(batches_consumed: int, last_states: dict | Iterable[dict]) -> dict:
    """The ``start=`` of :func:`make_pretrain_loader` after ``batches_consumed`` batches.

    ``last_states``: the ``data_state`` of consumed batches, either ``{worker: state}`` (the
    last one of each worker) or any iterable of states (the latest per worker is kept). The
    result is plain JSON-friendly ints (store it in the checkpoint, one per rank).
    """
    states = last_states.values() if isinstance(last_states, dict) else last_states
    latest: dict[int, dict] = {}
    for s in states:
        if (
            s["batch"] < batches_consumed
            and s["batch"] >= latest.get(s["worker"], {"batch": -1})["batch"]
        ):
            latest[int(s["worker"])] = s
    out: dict[str, Any] = {
        "batches": int(batches_consumed),
        "workers": {
            w: {"epoch": int(s["epoch"]), "consumed": int(s["consumed"])} for w, s in latest.items()
        },
    }
    if latest:
        out["num_workers"] = int(next(iter(latest.values()))["num_workers"])
    return out


# ----------------------------------------------------------------------------------------
# Evaluation / probing
# ----------------------------------------------------------------------------------------


class EvalStream(IterableDataset):
    """One pass over labelled shards, every sample once (see :func:`make_eval_loader`)."""

    def __init__(
        self,
        urls: list[str],
        cfg: DataConfig,
        *,
        num_clips: int,
        num_crops: int,
        batch_size: int,
        rank: int,
        world_size: int,
        train_aug: bool,
        seed: int,
    ) -> None:
        super().__init__()
        if num_crops not in (1, 3):
            raise ConfigError(f"num_crops must be 1 or 3, got {num_crops}")
        if num_clips < 1 or batch_size < 1:
            raise ConfigError(
                f"num_clips and batch_size must be >= 1, got {num_clips}, {batch_size}"
            )
        self.urls, self.cfg = urls, cfg
        self.num_clips, self.num_crops, self.batch_size = num_clips, num_crops, batch_size
        self.rank, self.world_size, self.train_aug, self.seed = rank, world_size, train_aug, seed
        self.epoch = 0  # pass counter: fresh augmentation per pass when train_aug

    def _views(self, raw: list[np.ndarray], gen: torch.Generator) -> torch.Tensor:
        """``num_clips`` uint8 clips -> ``[V, C, T, S, S]`` views, clip-major."""
        cfg, norm = self.cfg, not self.cfg.normalize_on_device
        if not self.train_aug:
            return torch.cat(
                [
                    eval_transform(
                        c, crop_size=cfg.crop_size, num_crops=self.num_crops, normalize=norm
                    )
                    for c in raw
                ]
            )
        views = [
            train_transform(
                c,
                crop_size=cfg.crop_size,
                scale=cfg.random_resize_scale,
                aspect=cfg.random_resize_aspect,
                # Never cfg.hflip: frozen evaluation must not change what a label means
                # (a flip turns SSv2's "pushing left" into "pushing right").
                hflip=False,
                generator=gen,
                normalize=norm,
            )
            for c in raw
            for _ in range(self.num_crops)
        ]
        return torch.stack(views)

    def _samples(self, worker: int, num_workers: int, errors: DataErrors) -> Iterator[dict]:
        shuffled = self.train_aug  # probe training: shuffled order, still each sample once
        return _slot_samples(
            self.urls,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            num_workers=num_workers,
            shard_seed=seed_for(self.seed, _SHARDS, self.epoch) if shuffled else None,
            shuffle_seed=seed_for(self.seed, _SHUFFLE, self.rank, worker, self.epoch)
            if shuffled
            else None,
            shuffle_buffer=self.cfg.shuffle_buffer,
            errors=errors,
        )

    def _batch(self, rows: _Rows, errors: DataErrors) -> dict:
        return {
            "video": torch.stack(rows.videos),  # [B, V, C, T, S, S]
            "label": torch.tensor(rows.labels, dtype=torch.long),  # [B]
            "key": rows.keys,
            "data_errors": errors.as_dict(),
            "decoder_fallbacks": dict(errors.fallbacks),
        }

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = _worker_slot()
        errors = DataErrors(where=f"[eval rank {self.rank} worker {worker}] ")
        rows = _Rows()
        for i, sample in enumerate(self._samples(worker, num_workers, errors)):
            parsed = _parse_sample(sample, errors)
            if parsed is None:
                continue
            key, video, label = parsed
            gen = _generator(self.seed, _AUG, self.epoch, self.rank, worker, i)
            raw = _decode_clips(
                video,
                key,
                cfg=self.cfg,
                num_clips=self.num_clips,
                mode="random" if self.train_aug else "uniform",
                short_video="pad",  # evaluation never drops a video for being short
                generator=gen,
                errors=errors,
            )
            if raw is None:
                continue
            rows.add(key, label, [self._views(raw, gen)])
            if rows.samples == self.batch_size:
                yield self._batch(rows, errors)
                rows = _Rows()
        if rows.samples:  # the last partial batch is kept
            yield self._batch(rows, errors)


class _PassLoader:
    """A re-iterable one-pass loader; each pass (probe epoch) gets its own augmentation seed."""

    def __init__(self, dataset: EvalStream, num_workers: int) -> None:
        self.dataset = dataset
        self.num_workers = num_workers

    def __iter__(self) -> Iterator[dict]:
        loader = _data_loader(self.dataset, self.num_workers)
        yield from loader
        self.dataset.epoch += 1


def make_eval_loader(
    shards: str,
    *,
    data_cfg: DataConfig,
    num_clips: int = 1,
    num_crops: int = 1,
    batch_size: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    train_aug: bool = False,
    seed: int = 0,
) -> Iterable[dict]:
    """Every sample of ``shards`` exactly once per pass (split over ranks x workers).

    Batches: ``video`` [B, V, C, T, S, S] with V = num_clips * num_crops (clip-major),
    ``label`` Long [B] (-1 = none), ``key`` list[str], ``data_errors``; the last partial
    batch is kept. Default: uniform clip positions + :func:`eval_transform`, shards in
    their listed order (deterministic). ``train_aug=True`` (probe training): random clips and
    random-resized crops (``num_crops`` independent ones per clip), shard order and shuffle
    buffer seeded by (seed, pass), so every pass over the loader sees new augmentation. No
    mode ever flips (``data.hflip`` is for pretraining only): flips swap left / right labels.
    Clip length, step / fps, crop size and decoder come from ``data_cfg``; short videos are
    always padded so that no sample is dropped.
    """
    urls = expand_urls(shards)
    backend_chain(data_cfg.decoder)  # an unusable decoder fails here; says which one is used
    if train_aug:  # probe training: shuffled like pretraining (eval passes keep shard order)
        data_cfg = replace(data_cfg, shuffle_buffer=shuffle_buffer_for(urls, data_cfg))
    stream = EvalStream(
        urls,
        data_cfg,
        num_clips=num_clips,
        num_crops=num_crops,
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        train_aug=train_aug,
        seed=seed,
    )
    return _PassLoader(stream, num_workers)
