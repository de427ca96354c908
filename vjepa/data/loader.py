"""Streaming loaders: webdataset tar shards -> decoded, augmented, masked batches.

Per (rank, worker) slot the stream is (the stages: vjepa.data.stages)

    shard URLs (shuffled per epoch, split over slots: vjepa.data.shards.slot_plan)
      -> tar samples {"__key__", "mp4", "json"} (vjepa.data.remote.shard_samples: local
         files as they are; http(s):// and s3:// retried and resumed per ``data.retry``)
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

Bad samples never stop the stream: vjepa.data.errors.DataErrors counts them by reason, logs
the first of each reason and a periodic summary, and the counts ride along in every batch
(``data_errors``, ``decoder_fallbacks``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import count
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from vjepa.config import ConfigError, DataConfig
from vjepa.data.augment import eval_transform, train_transform
from vjepa.data.backends import backend_chain
from vjepa.data.errors import DataError, DataErrors
from vjepa.data.shards import expand_urls
from vjepa.data.stages import (
    MASK,
    RESAMPLE,
    WORKER_ERROR,
    Clips,
    Rows,
    augment_generator,
    batched,
    collate_video,
    decode_clips,
    epoch_samples,
    errors_to_main,
    generator,
    raise_worker_error,
    resampled_samples,
    seed_for,
    shuffle_buffer_for,
    worker_init,
    worker_slot,
)

MaskFn = Callable[[int, torch.Generator], dict]


# ----------------------------------------------------------------------------------------
# The shared part of both streams
# ----------------------------------------------------------------------------------------


class _Stream(IterableDataset):
    """What both streams share: the shards, the data config, the seed and this rank's place."""

    def __init__(
        self, urls: list[str], cfg: DataConfig, *, seed: int, rank: int, world_size: int
    ) -> None:
        super().__init__()
        self.urls, self.cfg = urls, cfg
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def _epoch_samples(
        self, epoch: int, worker: int, num_workers: int, errors: DataErrors, *, shuffled: bool
    ) -> Iterator[dict]:
        """Raw samples of ``epoch`` for this (rank, worker) slot (:func:`epoch_samples`)."""
        return epoch_samples(
            self.urls,
            seed=self.seed,
            epoch=epoch,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            num_workers=num_workers,
            shuffle_buffer=self.cfg.shuffle_buffer,
            shuffled=shuffled,
            errors=errors,
            retry=self.cfg.retry,
        )


# ----------------------------------------------------------------------------------------
# Pretraining
# ----------------------------------------------------------------------------------------


class PretrainStream(_Stream):
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
        super().__init__(urls, cfg, seed=seed, rank=rank, world_size=world_size)
        self.mask_fn = mask_fn
        self.start = start or {"batches": 0, "workers": {}}

    def _resume_point(self, worker: int, num_workers: int) -> tuple[int, int, int]:
        """(first global batch index, epoch, raw samples to skip) for this worker."""
        batches = int(self.start.get("batches", 0))
        first = batches + (worker - batches) % num_workers
        state = {int(k): v for k, v in self.start.get("workers", {}).items()}.get(worker, {})
        return first, int(state.get("epoch", 0)), int(state.get("consumed", 0))

    def _epochs(
        self, worker: int, num_workers: int, errors: DataErrors
    ) -> Iterator[tuple[int, int, dict]]:
        """(epoch, raw index, sample) forever, starting at the resume point, skipping undecoded."""
        _, first_epoch, skip = self._resume_point(worker, num_workers)
        if self.cfg.resampled:
            reseed = int(self.start.get("batches", 0))  # fresh randomness per resume
            seed = seed_for(self.seed, RESAMPLE, self.rank, worker, reseed)
            samples = resampled_samples(
                self.urls,
                seed=seed,
                shuffle_buffer=self.cfg.shuffle_buffer,
                errors=errors,
                retry=self.cfg.retry,
            )
            for i, sample in enumerate(samples):
                yield reseed, i, sample
            return
        for epoch in count(first_epoch):
            samples = self._epoch_samples(epoch, worker, num_workers, errors, shuffled=True)
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

    def _clips(self, worker: int, num_workers: int, errors: DataErrors) -> Iterator[Clips]:
        """Good samples, cropped; a whole epoch without one is a :class:`DataError`."""
        cfg = self.cfg
        _, start_epoch, skipped = self._resume_point(worker, num_workers)
        good_in_epoch, epoch_seen = 0, None
        for epoch, i, sample in self._epochs(worker, num_workers, errors):
            if epoch != epoch_seen:
                # An epoch resumed part-way may legitimately have no good sample left.
                whole = epoch_seen is not None and (epoch_seen != start_epoch or skipped == 0)
                if whole and good_in_epoch == 0 and not cfg.resampled:
                    raise DataError(
                        f"no decodable sample in epoch {epoch_seen} (errors: {errors.as_dict()})"
                    )
                epoch_seen, good_in_epoch = epoch, 0
            gen = augment_generator(self.seed, self.rank, worker, epoch, i)
            got = decode_clips(
                sample,
                cfg=cfg,
                num_clips=cfg.num_clips,
                mode="random",
                short_video=cfg.short_video,
                generator=gen,
                errors=errors,
            )
            if got is None:
                continue
            good_in_epoch += 1
            key, label, raw = got
            clips = [
                train_transform(
                    c,
                    crop_size=cfg.crop_size,
                    scale=cfg.random_resize_scale,
                    aspect=cfg.random_resize_aspect,
                    hflip=cfg.hflip,
                    drift=cfg.drift,
                    generator=gen,
                    normalize=False,  # done per batch, in place: collate_video
                )
                for c in raw
            ]
            yield Clips(epoch, i, key, label, clips)

    def _batch(self, rows: Rows, batch: int, state: dict, errors: DataErrors) -> dict:
        video = collate_video(rows.videos, normalized=not self.cfg.normalize_on_device)
        out: dict[str, Any] = {
            "video": video,  # [B * num_clips, C, T, H, W]
            "label": torch.tensor(rows.labels, dtype=torch.long),  # [B * num_clips]
            "key": rows.keys,
        }
        if self.mask_fn is not None:
            out.update(self.mask_fn(video.shape[0], generator(self.seed, MASK, self.rank, batch)))
        return out | errors.batch_fields() | {"data_state": state}

    def __iter__(self) -> Iterator[dict]:
        return errors_to_main(self._iter())

    def _iter(self) -> Iterator[dict]:
        worker, num_workers = worker_slot()
        if self.start.get("num_workers", num_workers) != num_workers:
            raise ConfigError(
                f"resuming with data.num_workers={num_workers}, but the saved loader state is for "
                f"{self.start['num_workers']} workers; exact resume needs the same count"
            )
        errors = DataErrors(where=f"[rank {self.rank} worker {worker}] ")
        batch = self._resume_point(worker, num_workers)[0]
        clips = self._clips(worker, num_workers, errors)
        for rows, last in batched(clips, self.cfg.batch_size, partial=False):
            state = {
                "batch": batch,
                "worker": worker,
                "epoch": last.epoch,
                "consumed": last.index + 1,
                "num_workers": num_workers,
            }
            yield self._batch(rows, batch, state, errors)
            batch += num_workers


# ----------------------------------------------------------------------------------------
# Evaluation / probing
# ----------------------------------------------------------------------------------------


class EvalStream(_Stream):
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
        if num_crops not in (1, 3):
            raise ConfigError(f"num_crops must be 1 or 3, got {num_crops}")
        if num_clips < 1 or batch_size < 1:
            raise ConfigError(
                f"num_clips and batch_size must be >= 1, got {num_clips}, {batch_size}"
            )
        super().__init__(urls, cfg, seed=seed, rank=rank, world_size=world_size)
        self.num_clips, self.num_crops, self.batch_size = num_clips, num_crops, batch_size
        self.train_aug = train_aug
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

    def _clips(self, worker: int, num_workers: int, errors: DataErrors) -> Iterator[Clips]:
        """This pass's good samples, each as one row of views."""
        # Probe training: a shuffled order, still each sample once; evaluation: listed order.
        shuffled = self.train_aug
        samples = self._epoch_samples(self.epoch, worker, num_workers, errors, shuffled=shuffled)
        for i, sample in enumerate(samples):
            gen = augment_generator(self.seed, self.rank, worker, self.epoch, i, epoch_first=True)
            got = decode_clips(
                sample,
                cfg=self.cfg,
                num_clips=self.num_clips,
                mode="random" if self.train_aug else "uniform",
                short_video="pad",  # evaluation never drops a video for being short
                generator=gen,
                errors=errors,
            )
            if got is not None:
                key, label, raw = got
                yield Clips(self.epoch, i, key, label, [self._views(raw, gen)])

    def __iter__(self) -> Iterator[dict]:
        return errors_to_main(self._iter())

    def _iter(self) -> Iterator[dict]:
        worker, num_workers = worker_slot()
        errors = DataErrors(where=f"[eval rank {self.rank} worker {worker}] ")
        clips = self._clips(worker, num_workers, errors)
        for rows, _ in batched(clips, self.batch_size, partial=True):  # the last partial kept
            yield {
                "video": torch.stack(rows.videos),  # [B, V, C, T, S, S]
                "label": torch.tensor(rows.labels, dtype=torch.long),  # [B]
                "key": rows.keys,
                **errors.batch_fields(),
            }


# ----------------------------------------------------------------------------------------
# DataLoaders
# ----------------------------------------------------------------------------------------


class _StreamLoader:
    """A re-iterable DataLoader over a stream that batches itself (in the workers)."""

    def __init__(self, dataset: PretrainStream | EvalStream, num_workers: int) -> None:
        self.dataset = dataset
        self.num_workers = num_workers

    def _batches(self) -> Iterator[dict]:
        """The workers' batches as they come; a worker's UsageError raised here, as one line."""
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=self.num_workers,
            worker_init_fn=worker_init if self.num_workers > 0 else None,
            pin_memory=torch.cuda.is_available(),  # faster host -> GPU copies
        )
        for item in loader:
            if WORKER_ERROR in item:
                raise_worker_error(item)
            yield item


class _OrderedLoader(_StreamLoader):
    """Yields a pretraining stream's batches in global batch order (workers interleave)."""

    def __iter__(self) -> Iterator[dict]:
        expected = int(self.dataset.start.get("batches", 0))
        pending: dict[int, dict] = {}
        for item in self._batches():
            pending[item["data_state"]["batch"]] = item
            while expected in pending:  # at most num_workers batches wait here
                yield pending.pop(expected)
                expected += 1


class _PassLoader(_StreamLoader):
    """One pass per iteration; each pass (probe epoch) gets its own augmentation seed."""

    def __iter__(self) -> Iterator[dict]:
        yield from self._batches()
        self.dataset.epoch += 1


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
