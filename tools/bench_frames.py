"""Benchmark: how to store frame-folder videos, and how fast `shards --check` is.

Part 1 makes ``--videos`` JPEG frame folders (``--frames`` frames of ``--size``, quality 90: a
textured background that drifts, noise, a moving square; closer to camera frames than flat
colours) and stores each as

- ``mp4 lossless``: libx264rgb qp 0 (bit-exact to the decoded JPEGs),
- ``mp4 crf N``: libx264 yuv420p at ``--crf``,
- ``jpeg tar``: the original JPEG files in a tar, decoded with PIL,

then reports bytes per video and the seconds to decode one training clip (16 frames every 4,
the V-JEPA geometry) and the whole video, per backend.

Part 2 writes the CRF mp4s into shards with the writer and times ``check_shards`` quick (first
and last frame) against ``full``.

    flock /tmp/vjepa-cpu.lock python tools/bench_frames.py --out /tmp/bench_frames

Measured (defaults above, under the lock on the shared 2-core dev machine, best of 3):

    store          decoder      kB/video   enc ms  clip ms  full ms
    jpeg tar       PIL            1777.5      3.7      9.6    36.72
    mp4 lossless   pyav           8192.3    647.5   424.88    466.8
    mp4 lossless   torchcodec     8192.3    647.5    776.4   924.51
    mp4 crf 18     pyav            216.4    139.0    46.92    71.08
    mp4 crf 18     torchcodec      216.4    139.0    52.23    42.33
    shards --check samples/s: {'first+last': 118.23, 'full': 26.6}   (auto = torchcodec)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vjepa.data.check import check_shards
from vjepa.data.decode import open_video
from vjepa.data.formats import VideoItem
from vjepa.data.frames import LOSSLESS, encode_frame_source, pack_frames_tar, read_frames_tar
from vjepa.data.writer import write_shards


def make_folder(folder: Path, frames: int, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(base).resize((w + 16, h + 16), Image.BICUBIC))
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        dx = t % 16
        img = texture[8:, dx : dx + w][:h].astype(np.int16)  # [H, W, 3], drifting background
        img += rng.integers(-6, 7, img.shape, dtype=np.int16)  # sensor noise
        x = (5 * t) % (w - 32)
        img[h // 3 : h // 3 + 32, x : x + 32] = (240, 240, 40)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
            folder / f"img_{t + 1:05d}.jpg", quality=90
        )


def timed(fn, repeat: int) -> float:
    """Best-of-``repeat`` seconds of ``fn()`` (best: least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_frames"))
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["pyav", "torchcodec"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    shutil.rmtree(args.out, ignore_errors=True)
    folders = []
    for i in range(args.videos):
        folders.append(args.out / "frames" / f"v{i:03d}")
        make_folder(folders[-1], args.frames, tuple(args.size), seed=i)
    clip = list(range(0, min(args.frames, 64), 4))[:16]  # 16 frames, step 4
    every = list(range(args.frames))
    stores: dict[str, list[bytes]] = {"jpeg tar": [], "mp4 lossless": [], f"mp4 crf {args.crf}": []}
    enc_s: dict[str, float] = {k: 0.0 for k in stores}
    for f in folders:
        for name, make in (
            ("jpeg tar", lambda f=f: pack_frames_tar(f)),
            ("mp4 lossless", lambda f=f: encode_frame_source(f, fps=30, crf=LOSSLESS)),
            (f"mp4 crf {args.crf}", lambda f=f: encode_frame_source(f, fps=30, crf=args.crf)),
        ):
            t0 = time.perf_counter()
            stores[name].append(make())
            enc_s[name] += time.perf_counter() - t0
    jpeg_bytes = sum(p.stat().st_size for f in folders for p in f.iterdir()) / len(folders)
    rows = []
    for name, blobs in stores.items():
        backends = ["PIL"] if name == "jpeg tar" else args.backends
        for be in backends:

            def decode(idx: list[int], blobs=blobs, be=be, name=name) -> None:
                for b in blobs:
                    if name == "jpeg tar":
                        read_frames_tar(b, idx)
                    else:
                        with open_video(b, be) as r:
                            r.get_frames(idx)

            decode(clip)  # warm-up (imports, first open)
            rows.append(
                {
                    "store": name,
                    "decoder": be,
                    "kb_per_video": round(sum(map(len, blobs)) / len(blobs) / 1e3, 1),
                    "encode_ms_per_video": round(1e3 * enc_s[name] / len(blobs), 1),
                    "clip_ms": round(
                        1e3 * timed(lambda: decode(clip), args.repeat) / len(blobs), 2
                    ),
                    "full_ms": round(
                        1e3 * timed(lambda: decode(every), args.repeat) / len(blobs), 2
                    ),
                }
            )
    crf_name = f"mp4 crf {args.crf}"
    src = args.out / "mp4"
    src.mkdir()
    items = []
    for i, b in enumerate(stores[crf_name]):
        (src / f"v{i:03d}.mp4").write_bytes(b)
        items.append(VideoItem(str(src / f"v{i:03d}.mp4"), i % 3, f"c{i % 3}"))
    write_shards(items, args.out / "shards", progress=False)
    check = {}
    for full in (False, True):
        check_shards(str(args.out / "shards"), full=full)  # warm-up
        reps = [check_shards(str(args.out / "shards"), full=full) for _ in range(args.repeat)]
        check["full" if full else "first+last"] = max(r["samples_per_s"] for r in reps)
    result = {
        "videos": args.videos,
        "frames": args.frames,
        "size": args.size,
        "jpeg_folder_kb_per_video": round(jpeg_bytes / 1e3, 1),
        "clip": "16 frames every 4",
        "rows": rows,
        "check_samples_per_s": check,
        "check_decoder": "auto",
    }
    print(
        f"{args.videos} videos x {args.frames} frames {args.size[0]}x{args.size[1]}, "
        f"JPEG q90 folders {result['jpeg_folder_kb_per_video']} kB/video"
    )
    print(
        f"{'store':<14} {'decoder':<11} {'kB/video':>9} {'enc ms':>8} {'clip ms':>8} {'full ms':>8}"
    )
    for r in rows:
        print(
            f"{r['store']:<14} {r['decoder']:<11} {r['kb_per_video']:>9} "
            f"{r['encode_ms_per_video']:>8} {r['clip_ms']:>8} {r['full_ms']:>8}"
        )
    print(f"shards --check samples/s: {check}")
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
