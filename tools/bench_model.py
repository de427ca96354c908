"""Benchmark one full V-JEPA pretraining step and compare its FLOP rate to a plain matmul.

One step = target forward (no grad) + context forward per mask generator + predictor +
backward + AdamW step + EMA update, on random clips with the default multi-block masks.
FLOPs are counted analytically (matmuls only: linear layers, the patch-embed conv, attention
QK^T and AV); trainable parts count forward x3 (forward + backward), the target encoder x1.

    python tools/bench_model.py --model small --frames 16 --size 224 --batch 2 --steps 5
"""

from __future__ import annotations

import argparse
import time

import torch

from vjepa.config import PretrainRoot
from vjepa.jepa.masks import MaskCollator
from vjepa.jepa.model import JEPA, build_jepa


def vit_flops(batch: int, tokens: int, width: int, depth: int, mlp_hidden: int) -> float:
    """Matmul FLOPs of ``depth`` pre-LN blocks on ``tokens`` tokens (2 per multiply-add)."""
    linear = tokens * (width * 3 * width + width * width + 2 * width * mlp_hidden)
    attention = 2 * tokens * tokens * width  # QK^T and AV
    return 2.0 * batch * depth * (linear + attention)


def step_flops(jepa: JEPA, batch: int, n: int, pairs: list[tuple[int, int]]) -> float:
    """FLOPs of one training step; ``pairs`` = (Kc, Kt) per mask generator."""
    enc, pred = jepa.encoder, jepa.predictor
    d, depth = enc.embed_dim, len(enc.blocks)
    hidden = enc.blocks[0].mlp.fc1.out_features
    proj = enc.patch_embed.proj
    patch = 2.0 * batch * n * d * proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1] ** 2
    dp = pred.predictor_embed.out_features
    p_hidden = pred.predictor_blocks[0].mlp.fc1.out_features
    target = patch + vit_flops(batch, n, d, depth, hidden)
    trainable = patch  # the context encoder embeds the clip once for all masks
    for kc, kt in pairs:
        trainable += vit_flops(batch, kc, d, depth, hidden)
        trainable += 2.0 * batch * (kc * d * dp + kt * dp * d)  # predictor_embed, predictor_proj
        trainable += vit_flops(batch, kc + kt, dp, len(pred.predictor_blocks), p_hidden)
    return target + 3.0 * trainable


def mm_peak(m: int, k: int, n: int, device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s of ``[m, k] @ [k, n]`` over a few repetitions (same process, same threads)."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(8):
        _sync(device)
        t = _clock(device)
        for _ in range(4):
            a @ b
        _sync(device)
        best = min(best, (_clock(device) - t) / 4)
    return 2.0 * m * k * n / best


def _clock(device: torch.device) -> float:
    """Seconds. On CPU: this process's CPU time / threads, which a busy shared machine does not
    inflate the way it inflates wall time (spin-waiting threads still count: conservative)."""
    if device.type == "cpu":
        return time.process_time() / torch.get_num_threads()
    return time.perf_counter()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="small")
    ap.add_argument("--pos-embed", default="sincos", choices=["sincos", "rope"])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    args = ap.parse_args()

    device = torch.device(args.device)
    cfg = PretrainRoot()
    cfg.model.name, cfg.model.pos_embed = args.model, args.pos_embed
    cfg.model.activation_checkpointing = args.checkpointing
    cfg.data.frames_per_clip, cfg.data.crop_size = args.frames, args.size
    jepa = build_jepa(cfg).to(device)
    opt = torch.optim.AdamW([p for p in jepa.parameters() if p.requires_grad], lr=1e-4)
    masks = MaskCollator(cfg.mask, jepa.encoder.grid)(args.batch, torch.Generator().manual_seed(0))
    ctx = [m.to(device) for m in masks["ctx_idx"]]
    tgt = [m.to(device) for m in masks["tgt_idx"]]
    g = torch.Generator().manual_seed(1)
    video = torch.randn(args.batch, 3, args.frames, args.size, args.size, generator=g).to(device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=args.dtype == "bf16"):
            out = jepa(video, ctx, tgt)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        jepa.update_target(0.999)

    for _ in range(args.warmup):
        step()
    _sync(device)
    t, wall = _clock(device), time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    sec = (_clock(device) - t) / args.steps
    wall = (time.perf_counter() - wall) / args.steps

    n = jepa.encoder.grid[0] * jepa.encoder.grid[1] * jepa.encoder.grid[2]
    pairs = [(c.shape[1], t_.shape[1]) for c, t_ in zip(ctx, tgt)]
    flops = step_flops(jepa, args.batch, n, pairs)
    d = jepa.encoder.embed_dim
    peak = mm_peak(args.batch * n, d, 4 * d, device, dtype)
    print(
        f"model={args.model} pos={args.pos_embed} clip={args.frames}x{args.size}^2 "
        f"batch={args.batch} device={args.device} dtype={args.dtype} threads={torch.get_num_threads()}\n"
        f"tokens N={n} masks (Kc, Kt)={pairs}\n"
        f"step {sec * 1e3:.1f} ms  {1 / sec:.3f} steps/s  {args.batch / sec:.2f} clips/s"
        f"  (wall {wall * 1e3:.1f} ms)\n"
        f"achieved {flops / sec / 1e9:.1f} GFLOP/s ({flops / 1e9:.1f} GFLOP/step)  "
        f"mm peak {peak / 1e9:.1f} GFLOP/s  ratio {flops / sec / peak:.2f}"
    )


if __name__ == "__main__":
    main()
