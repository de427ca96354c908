"""Benchmark the training data path on real shards.

    python tools/bench_data.py SHARDS [--frames 16 --step 4 --size 224 --batch-size 8
                                       --batches 50 --workers 1,2 --rss-batches 300
                                       --compare-short-side 256]

Reports, on the same clips:

(a) raw decode: decord open + get_batch of the loader's frame indices, one process, no
    augmentation (the ceiling a loader worker can reach);
(b) the full loader (make_pretrain_loader: tar reading, decode, crop, resize, normalise,
    batching, IPC) with 1 worker, then N workers, and the ratio loader / raw on 1 worker;
(c) resident memory (main process + workers) over a long run: it must stay flat;
(d) with --compare-short-side S: the same videos re-encoded with short side S (what
    ``vjepa shards --short-side S`` stores) and the raw decode speedup over the originals.

The loader runs without a shuffle buffer so its 1-worker clips are exactly the raw ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Iterator
from itertools import count, islice
from pathlib import Path

import numpy as np
import psutil
import torch
import webdataset as wds
from webdataset.tariterators import tarfile_samples

from vjepa.config import DataConfig
from vjepa.data.clips import clip_indices
from vjepa.data.decode import open_video, transcode
from vjepa.data.pipeline import (
    _AUG,
    _SHARDS,
    DataErrors,
    _generator,
    _slot_samples,
    make_pretrain_loader,
    seed_for,
)
from vjepa.data.shards import expand_urls


def _endless_samples(urls: list[str], seed: int) -> Iterator[tuple[int, int, dict]]:
    """(epoch, index, sample) in the exact order the 1-worker loader reads them."""
    for epoch in count():
        samples = _slot_samples(
            urls, rank=0, world_size=1, worker=0, num_workers=1,
            shard_seed=seed_for(seed, _SHARDS, epoch), shuffle_seed=None, shuffle_buffer=0,
            errors=DataErrors("[bench] "),
        )  # fmt: skip
        for i, sample in enumerate(samples):
            yield epoch, i, sample


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its live loader workers."""
    me = psutil.Process(os.getpid())
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue  # a worker that just exited
        total += t.user + t.system
    return total


def raw_decode(urls: list[str], cfg: DataConfig, clips: int, seed: int) -> tuple[float, float]:
    """(clips/s, CPU ms/clip) of decord open + get_batch on the 1-worker loader's indices."""
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    for epoch, i, sample in _endless_samples(urls, seed):
        gen = _generator(seed, _AUG, 0, 0, epoch, i)  # the loader's per-sample generator
        with open_video(sample["mp4"], cfg.decoder) as reader:
            idx = clip_indices(
                reader.num_frames,
                frames_per_clip=cfg.frames_per_clip,
                frame_step=cfg.frame_step,
                num_clips=cfg.num_clips,
                generator=gen,
                video_fps=reader.fps,
                target_fps=cfg.fps,
                short_video=cfg.short_video,
            )
            if idx is None:
                continue
            reader.get_frames(np.concatenate(idx))
        done += cfg.num_clips
        if done >= clips:
            wall = time.perf_counter() - start
            return done / wall, 1000 * (time.process_time() - cpu) / done
    raise AssertionError("unreachable")


def rss_mb() -> float:
    """Resident memory of this process and its loader workers, MiB."""
    me = psutil.Process(os.getpid())
    total = 0
    for p in [me, *me.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue  # a worker that just exited
    return total / 2**20


def loader_speed(
    cfg: DataConfig, batches: int, seed: int, rss_every: int = 0
) -> tuple[float, float, list[float]]:
    """Steady state of the loader, timed from its first batch: (clips/s, CPU ms/clip, RSS MiB samples)."""
    it = iter(make_pretrain_loader(cfg, mask_fn=None, seed=seed))
    rows = next(it)["video"].shape[0]
    start, cpu, rss = time.perf_counter(), _cpu_seconds(), []
    for n, _batch in enumerate(islice(it, batches - 1), start=1):
        if rss_every and n % rss_every == 0:
            rss.append(rss_mb())
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    del it  # shuts the workers down
    clips = rows * (batches - 1)
    return clips / wall, 1000 * cpu / clips, rss


def short_side_shards(urls: list[str], out: Path, short_side: int) -> list[str]:
    """Re-encode every video of ``urls`` to ``short_side`` into new shards under ``out``."""
    paths = []
    for s, url in enumerate(urls):
        path = out / f"short-{s:06d}.tar"
        with wds.TarWriter(str(path)) as tar:
            for sample in tarfile_samples([{"url": url}]):
                tar.write(
                    {
                        "__key__": sample["__key__"],
                        "mp4": transcode(sample["mp4"], short_side=short_side),
                        "json": sample["json"],
                    }
                )
        paths.append(str(path))
    return paths


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("shards", help="shard spec: folder, glob, brace pattern, ...")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--step", type=int, default=4, help="frame step")
    p.add_argument("--size", type=int, default=224, help="crop size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=50, help="batches per loader measurement")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to time")
    p.add_argument(
        "--rss-batches", type=int, default=0, help="long run for the RSS check (0: 6 x --batches)"
    )
    p.add_argument(
        "--compare-short-side",
        type=int,
        default=0,
        help="also time shards re-encoded to this short side",
    )
    p.add_argument("--decoder", default="decord", choices=["decord", "pyav"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the numbers to this JSON file")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # like a loader worker: the raw number is per core
    urls = expand_urls(args.shards)
    cfg = DataConfig(
        shards=args.shards, batch_size=args.batch_size, frames_per_clip=args.frames, frame_step=args.step,
        crop_size=args.size, shuffle_buffer=0, decoder=args.decoder,
    )  # fmt: skip
    clips = args.batches * args.batch_size
    report: dict = {
        "shards": len(urls),
        "frames": args.frames,
        "step": args.step,
        "size": args.size,
    }
    raw, raw_cpu = raw_decode(urls, cfg, clips, args.seed)
    report["raw"] = {"clips_per_s": raw, "cpu_ms_per_clip": raw_cpu}
    print(
        f"(a) raw decord decode       {raw:7.2f} clips/s  {raw_cpu:7.1f} CPU ms/clip  ({clips} clips)"
    )
    for w in [int(x) for x in args.workers.split(",")]:
        speed, cpu, _ = loader_speed(
            dataclasses.replace(cfg, num_workers=w), args.batches, args.seed
        )
        report[f"loader_{w}w"] = {"clips_per_s": speed, "cpu_ms_per_clip": cpu}
        ratio = (
            f"  loader/raw = {speed / raw:.2f} (CPU raw/loader = {raw_cpu / cpu:.2f})"
            if w == 1
            else ""
        )
        print(f"(b) loader, {w} worker(s)     {speed:7.2f} clips/s  {cpu:7.1f} CPU ms/clip{ratio}")
    long_run = args.rss_batches or 6 * args.batches
    every = max(1, long_run // 12)
    _, _, rss = loader_speed(
        dataclasses.replace(cfg, num_workers=1), long_run, args.seed, rss_every=every
    )
    report["rss_mib"] = {"every_batches": every, "samples": rss}
    print(
        f"(c) RSS every {every} batches over {long_run} (MiB): " + " ".join(f"{r:.0f}" for r in rss)
    )
    if args.compare_short_side:
        with tempfile.TemporaryDirectory() as tmp:
            small = short_side_shards(urls, Path(tmp), args.compare_short_side)
            small_cfg = dataclasses.replace(cfg, shards=tmp)
            raw_small, small_cpu = raw_decode(small, small_cfg, clips, args.seed)
        report[f"raw_short{args.compare_short_side}"] = {
            "clips_per_s": raw_small,
            "cpu_ms_per_clip": small_cpu,
        }
        print(
            f"(d) raw decode, short side {args.compare_short_side}: {raw_small:7.2f} clips/s  "
            f"{small_cpu:7.1f} CPU ms/clip  speedup {raw_small / raw:.1f}x (CPU {raw_cpu / small_cpu:.1f}x)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
