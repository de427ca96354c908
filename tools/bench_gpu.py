"""One GPU check: bf16 MFU of ViT-L/16 16x224 at batch 24, loader clips/s per core, and our
step against the re-implemented official step (tools/bench_reference.py).

    python tools/bench_gpu.py                       # on a CUDA machine (H100 / H200 peak default)
    python tools/bench_gpu.py --peak-tflops 312     # A100 bf16 dense peak
    python tools/bench_gpu.py --dry-run             # tiny sizes on the CPU: checks the script

Parts:

1. MFU: ``vjepa.train.step.optimizer_step`` (the real pretraining step: Accelerate bf16 autocast, AdamW,
   EMA, the one collective finite check) on a batch already on the GPU; FLOPs counted
   analytically as tools/bench_model.py does (matmuls; trainable parts x3, target x1); MFU =
   achieved FLOP/s / ``--peak-tflops`` (the vendor's dense bf16 figure). A measured
   ``torch.mm`` bf16 peak is printed beside it.
2. Loader: ``make_pretrain_loader`` over shards (``--shards``; default: the sample corpus,
   written to a temp folder) with ``--workers`` workers at the same clip geometry; clips/s
   divided by the workers = clips/s per core (each worker is one process with one thread).
3. Reference: ours and the reference step alternately, ``--rounds`` rounds, median ratio.

Prints one JSON object at the end (also written to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_model import step_flops
from bench_reference import make_steps, synthetic_batch

from vjepa.config import Config, load_config


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, steps: int, device: str) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / steps


def _config(args: argparse.Namespace, run_dir: str) -> Config:
    over = [
        f"run.dir={run_dir}",
        "run.trackers=[]",
        f"model.name={args.model}",
        f"data.frames_per_clip={args.frames}",
        f"data.crop_size={args.size}",
        f"data.batch_size={args.batch}",
        f"train.mixed_precision='{args.precision}'",  # quoted: YAML reads a bare no as false
        "optim.warmup_steps=0",
        "train.max_steps=100000",
        f"model.patch_size={args.patch}",
    ]
    if args.dry_run:
        over += ["model.tubelet_size=2", "model.pred_width=48", "model.pred_depth=2",
                 "model.pred_heads=4"]  # fmt: skip
    return load_config(None, over)


def mm_peak(device: str, dtype: torch.dtype, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        best = min(best, _timed(lambda: a @ b, 4, device))
    return 2.0 * n**3 / best


def bench_mfu(cfg: Config, args: argparse.Namespace, device: str) -> dict:
    batch = synthetic_batch(cfg)
    ours, ref = make_steps(cfg, batch, device)
    for _ in range(args.warmup):
        ours()
        ref()
    ours_t, ref_t = [], []
    for r in range(args.rounds):
        order = [(ours, ours_t), (ref, ref_t)]
        for fn, out in order if r % 2 == 0 else order[::-1]:
            out.append(_timed(fn, args.steps, device))
    from vjepa.jepa.model import build_jepa

    jepa = build_jepa(cfg)  # for the FLOP count only (CPU, not run)
    grid = jepa.encoder.grid
    n = grid[0] * grid[1] * grid[2]
    pairs = [(c.shape[1], t.shape[1]) for c, t in zip(batch["ctx_idx"], batch["tgt_idx"])]
    flops = step_flops(jepa, cfg.data.batch_size, n, pairs)
    sec = statistics.median(ours_t)
    dtype = torch.bfloat16 if cfg.train.mixed_precision == "bf16" else torch.float32
    peak_mm = mm_peak(device, dtype, 256 if args.dry_run else 8192)
    achieved = flops / sec
    return {
        "model": cfg.model.name,
        "clip": f"{cfg.data.frames_per_clip}x{cfg.data.crop_size}",
        "batch": cfg.data.batch_size,
        "precision": cfg.train.mixed_precision,
        "tokens": n,
        "masks_kc_kt": pairs,
        "gflop_per_step": flops / 1e9,
        "step_s": sec,
        "clips_per_s": cfg.data.batch_size / sec,
        "achieved_tflops": achieved / 1e12,
        "mm_peak_tflops": peak_mm / 1e12,
        "peak_tflops": args.peak_tflops,
        "mfu": achieved / (args.peak_tflops * 1e12),
        "reference_step_s": statistics.median(ref_t),
        "ratio_vs_reference": statistics.median([a / b for a, b in zip(ours_t, ref_t)]),
    }


def bench_loader(cfg: Config, args: argparse.Namespace, tmp: Path) -> dict:
    from vjepa.data.loader import make_pretrain_loader
    from vjepa.jepa.masks import MaskCollator
    from vjepa.train.pretrain import token_grid

    shards = args.shards
    if not shards:
        from vjepa.demo.pretrain import write_demo_corpus

        shards = str(write_demo_corpus(tmp / "demo", quick=True)[0]["train"])
    cfg.data.shards = shards
    cfg.data.num_workers = args.workers
    cfg.data.resampled = True  # endless: the sample corpus is small
    loader = iter(
        make_pretrain_loader(cfg.data, mask_fn=MaskCollator(cfg.mask, token_grid(cfg)), seed=0)
    )
    for _ in range(max(args.workers, 1)):  # workers started, first batches out
        next(loader)
    clips, t = 0, time.perf_counter()
    for _ in range(args.loader_batches):
        clips += int(next(loader)["video"].shape[0])
    rate = clips / (time.perf_counter() - t)
    return {
        "loader_shards": shards,
        "loader_workers": args.workers,
        "loader_clips_per_s": rate,
        "loader_clips_per_s_per_core": rate / max(args.workers, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--model", default="large")
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "no"])
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="steps per side per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--shards", default="", help="loader shards (default: the sample corpus)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--loader-batches", type=int, default=40)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.dry_run:
        args.model, args.patch, args.frames, args.size, args.batch = "tiny_cpu", 8, 4, 32, 2
        args.precision, args.warmup, args.steps, args.rounds = "no", 1, 1, 2
        args.workers, args.loader_batches = min(args.workers, 1), 3
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device (use --dry-run to check the script on a CPU)")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(args, tmp)
        result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
        result |= bench_mfu(cfg, args, device)
        result |= bench_loader(_config(args, tmp), args, Path(tmp))
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
