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
    ``vjepa shards --short-side S`` stores) and the raw decode speedup over the originals;
(e) decoders side by side (``--decoders decord,torchcodec,pyav``): open + decode of the SAME
    frame indices of the same samples with each backend, interleaved sample by sample so
    that load from other processes hits every backend alike; clips/s, CPU ms/clip, the ratio
    to the fastest, the largest pixel difference to the first backend, and what
    ``data.decoder=auto`` picks here. ``--decoders-only`` skips (a)-(d).

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
from vjepa.data.backends import AUTO_ORDER, available_backends
from vjepa.data.clips import clip_indices
from vjepa.data.decode import VideoReader, open_video
from vjepa.data.encode import transcode
from vjepa.data.errors import DataErrors
from vjepa.data.framecount import frame_counts
from vjepa.data.loader import make_pretrain_loader
from vjepa.data.shards import expand_urls
from vjepa.data.stages import augment_generator, epoch_samples


def _endless_samples(urls: list[str], seed: int) -> Iterator[tuple[int, int, dict]]:
    """(epoch, index, sample) in the exact order the 1-worker loader reads them."""
    for epoch in count():
        samples = epoch_samples(
            urls, seed=seed, epoch=epoch, rank=0, world_size=1, worker=0, num_workers=1,
            shuffle_buffer=0, shuffled=True, errors=DataErrors("[bench] "),
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


def _clip_indices(
    reader: VideoReader, cfg: DataConfig, gen: torch.Generator, frames: int | None = None
) -> list | None:
    """The frame indices of a sample's clips, as the loader draws them (random mode), within
    ``frames`` (default the reader's count)."""
    return clip_indices(
        reader.num_frames if frames is None else frames,
        frames_per_clip=cfg.frames_per_clip,
        frame_step=cfg.frame_step,
        num_clips=cfg.num_clips,
        generator=gen,
        video_fps=reader.fps,
        target_fps=cfg.fps,
        short_video=cfg.short_video,
    )


def raw_decode(urls: list[str], cfg: DataConfig, clips: int, seed: int) -> tuple[float, float]:
    """(clips/s, CPU ms/clip) of open + decode (``cfg.decoder``) of the 1-worker loader's indices."""
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    for epoch, i, sample in _endless_samples(urls, seed):
        gen = augment_generator(seed, 0, 0, epoch, i)  # the loader's per-sample generator
        with open_video(sample["mp4"], cfg.decoder) as reader:
            idx = _clip_indices(reader, cfg, gen)
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


def decoder_table(
    urls: list[str], cfg: DataConfig, backends: list[str], clips: int, seed: int
) -> dict[str, dict]:
    """(e): every backend on the same samples and the same frame indices, interleaved."""
    jobs = []  # (video bytes, concatenated frame indices of the sample's clips)
    disagree: dict[str, dict[str, int]] = {}  # key -> backend -> (reported, decodable) counts
    for epoch, i, sample in _endless_samples(urls, seed):
        gen = augment_generator(seed, 0, 0, epoch, i)  # the loader's per-sample generator
        # A header may overstate the frames (vjepa.data.framecount): index within what every
        # backend decodes, and report the files whose counts differ.
        counts = {b: frame_counts(sample["mp4"], b) for b in backends}
        seen = {v for c in counts.values() for v in (c.reported, c.decodable)}
        if len(seen) > 1:
            disagree[str(sample.get("__key__"))] = {
                **{f"{b}_reported": c.reported for b, c in counts.items()},
                **{f"{b}_decodable": c.decodable for b, c in counts.items()},
            }
        with open_video(sample["mp4"], "pyav") as reader:
            idx = _clip_indices(reader, cfg, gen, min(c.decodable for c in counts.values()))
        if idx is not None:
            jobs.append((sample["mp4"], np.concatenate(idx)))
        if len(jobs) * cfg.num_clips >= clips:
            break
    wall = dict.fromkeys(backends, 0.0)
    cpu = dict.fromkeys(backends, 0.0)
    diff = dict.fromkeys(backends, 0)
    for n, (data, idx) in enumerate(jobs):
        got = {}
        # Rotate the order per sample: no backend always runs first (cold caches) or last.
        for b in backends[n % len(backends) :] + backends[: n % len(backends)]:
            t0, c0 = time.perf_counter(), time.process_time()
            with open_video(data, b) as reader:
                got[b] = reader.get_frames(idx)  # [T, H, W, 3]
            wall[b] += time.perf_counter() - t0
            cpu[b] += time.process_time() - c0
        ref = got[backends[0]].astype(np.int16)
        for b in backends[1:]:
            diff[b] = max(diff[b], int(np.abs(got[b].astype(np.int16) - ref).max()))
    done = len(jobs) * cfg.num_clips
    speed = {b: done / wall[b] for b in backends}
    best = max(speed.values())
    return {
        b: {
            "clips_per_s": speed[b],
            "cpu_ms_per_clip": 1000 * cpu[b] / done,
            "ratio_to_fastest": speed[b] / best,
            "max_abs_diff_vs_first": diff[b],
            "clips": done,
            "frame_count_disagreements": disagree,
        }
        for b in backends
    }


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
    p.add_argument(
        "--decoder", default="auto", choices=["auto", "decord", "torchcodec", "pyav"],
        help="backend of (a)-(d)",
    )  # fmt: skip
    p.add_argument(
        "--decoders",
        default="",
        help="(e): comma-separated backends to compare (default: all usable)",
    )
    p.add_argument("--decoders-only", action="store_true", help="run only (e)")
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
    backends = args.decoders.split(",") if args.decoders else list(available_backends())
    table = decoder_table(urls, cfg, backends, clips, args.seed)
    report["decoders"] = table
    report["auto"] = available_backends()[0]
    print(f"(e) decoders, same {table[backends[0]]['clips']} clips and frame indices:")
    print("    backend      clips/s  CPU ms/clip  vs fastest  max |diff| vs " + backends[0])
    for b, row in table.items():
        print(
            f"    {b:11s} {row['clips_per_s']:8.2f} {row['cpu_ms_per_clip']:12.1f} "
            f"{row['ratio_to_fastest']:10.2f}  {row['max_abs_diff_vs_first']:5d}"
        )
    print(f"    data.decoder=auto picks {report['auto']} (order {', '.join(AUTO_ORDER)})")
    if args.decoders_only:
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return
    raw, raw_cpu = raw_decode(urls, cfg, clips, args.seed)
    report["raw"] = {"clips_per_s": raw, "cpu_ms_per_clip": raw_cpu}
    print(
        f"(a) raw {cfg.decoder} decode {raw:7.2f} clips/s  {raw_cpu:7.1f} CPU ms/clip  ({clips} clips)"
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
