"""Our pretraining step against a faithful re-implementation of the official V-JEPA step.

The reference is facebookresearch/jepa ``app/vjepa/train/pretrain.py`` (``train_step`` inside
``main``), re-implemented here from reading it (no code vendored) on the SAME modules, masks,
clips and initial weights as ours, so only the step's own mechanics differ:

- ``scheduler.step()`` / ``wd_scheduler.step()`` set lr / wd on 4 parameter groups before the
  forward (encoder / predictor x decay / no-decay), plain ``torch.optim.AdamW`` defaults;
- the encoder runs whole (patch embedding included) once per mask generator
  (``MultiMaskWrapper``), the predictor once per generator (``PredictorMultiMaskWrapper``);
  targets: full-clip target forward, ``F.layer_norm``, ``apply_masks`` by repeat + gather;
- loss: a Python loop of ``mean(|z - h|^p) / p`` over the pairs, plus the variance
  regulariser ``reg_fn`` computed every step with gradients (``reg_coeff`` = 0 multiplies it);
- backward (through ``GradScaler`` when mixed precision), ``clip_grad_norm_`` on the encoder
  and on the predictor separately (steady state: past warmup), ``optimizer.step()``,
  ``grad_logger`` on both modules (``float(norm)`` of every weight gradient),
  ``optimizer.zero_grad()``, ``adamw_logger`` (``optimizer.state_dict()`` and the mean
  |moment| of every state, as floats);
- EMA: a Python loop over parameters, ``param_k.mul_(m).add_((1 - m) * param_q)``;
- ``float(loss)``, ``float(loss_jepa)``, ``float(loss_reg)``, and two ``float(AllReduce(...))``
  of the input variance per step.

Ours is ``vjepa.train.step.optimizer_step`` on a prepared run (Accelerate, the one collective finite
check, fused EMA, numbers kept on the device) plus the loop's per-step bookkeeping.

The two steps run alternately, back to back, in one process (``--rounds`` rounds of
``--steps`` steps each); the ratio is the median of per-round ratios, so load from other
processes on a shared machine hits both sides alike.

    python tools/bench_reference.py configs/pretrain/demo_cpu.yaml model.pos_embed=sincos
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from torch import Tensor

from vjepa.config import Config, load_config
from vjepa.jepa.masks import MaskCollator
from vjepa.jepa.model import JEPA
from vjepa.train.loop import count_step, prepare_run
from vjepa.train.pretrain import pretrain_task, token_grid
from vjepa.train.schedules import ema_at
from vjepa.train.step import optimizer_step


def synthetic_batch(cfg: Config, seed: int = 0) -> dict:
    """A batch shaped like the loader's (normalised float video) with real multi-block masks."""
    g = torch.Generator().manual_seed(seed)
    rows = cfg.data.batch_size * cfg.data.num_clips
    f, s = cfg.data.frames_per_clip, cfg.data.crop_size
    batch = {"video": torch.randn(rows, 3, f, s, s, generator=g)}  # [B, C, T, H, W]
    batch |= MaskCollator(cfg.mask, token_grid(cfg))(rows, g)
    return batch


# ----------------------------------------------------------------------------------------
# The reference step (re-implemented)
# ----------------------------------------------------------------------------------------


def _ref_apply_masks(x: Tensor, masks: list[Tensor]) -> list[Tensor]:
    """The reference's apply_masks(concat=False): repeat the index to [B, K, D], then gather."""
    return [torch.gather(x, 1, m.unsqueeze(-1).repeat(1, 1, x.size(-1))) for m in masks]


class _WarmupCosine:
    """The reference WarmupCosineSchedule: steps first, then sets lr on every group."""

    def __init__(self, opt, warmup: int, start_lr: float, ref_lr: float, final_lr: float, t_max):
        self.opt, self.warmup, self.start, self.ref, self.final = (
            opt,
            warmup,
            start_lr,
            ref_lr,
            final_lr,
        )
        self.t_max, self._step = t_max - warmup, 0.0

    def step(self) -> float:
        self._step += 1
        if self._step < self.warmup:
            lr = self.start + self._step / max(1, self.warmup) * (self.ref - self.start)
        else:
            progress = (self._step - self.warmup) / max(1, self.t_max)
            lr = max(
                self.final,
                self.final + (self.ref - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress)),
            )
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr


class _CosineWD:
    """The reference CosineWDSchedule (skips groups marked WD_exclude)."""

    def __init__(self, opt, ref_wd: float, final_wd: float, t_max: int):
        self.opt, self.ref, self.final, self.t_max, self._step = opt, ref_wd, final_wd, t_max, 0.0

    def step(self) -> float:
        self._step += 1
        progress = self._step / self.t_max
        wd = self.final + (self.ref - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))
        wd = max(self.final, wd) if self.final <= self.ref else min(self.final, wd)
        for group in self.opt.param_groups:
            if not group.get("WD_exclude", False):
                group["weight_decay"] = wd
        return wd


def _grad_logger(named_params) -> dict[str, float]:
    """The reference grad_logger: float(norm) of every non-bias, non-1-D gradient."""
    norms, first, last = [], None, None
    for n, p in named_params:
        if p.grad is not None and not (n.endswith(".bias") or len(p.shape) == 1):
            norm = float(torch.norm(p.grad.data))
            norms.append(norm)
            if "qkv" in n:
                last = norm
                first = norm if first is None else first
    return {"avg": sum(norms) / max(len(norms), 1), "first": first or 0.0, "last": last or 0.0}


def _adamw_logger(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The reference adamw_logger: mean |exp_avg| and |exp_avg_sq| of every state, as floats."""
    state = optimizer.state_dict().get("state")
    avg = [float(s.get("exp_avg").abs().mean()) for s in state.values()]
    sq = [float(s.get("exp_avg_sq").abs().mean()) for s in state.values()]
    return {"exp_avg": sum(avg) / len(avg), "exp_avg_sq": sum(sq) / len(sq)}


class ReferenceStep:
    """The official V-JEPA training step on our JEPA modules (see the module docstring)."""

    def __init__(self, cfg: Config, jepa: JEPA, *, clip_grad: float = 10.0, reg_coeff: float = 0.0):
        self.cfg, self.jepa = cfg, jepa
        enc, pred = jepa.encoder, jepa.predictor
        decay = lambda n, p: "bias" not in n and len(p.shape) != 1  # noqa: E731
        groups = [
            {"params": [p for n, p in enc.named_parameters() if decay(n, p)]},
            {"params": [p for n, p in pred.named_parameters() if decay(n, p)]},
            {
                "params": [p for n, p in enc.named_parameters() if not decay(n, p)],
                "WD_exclude": True,
                "weight_decay": 0,
            },
            {
                "params": [p for n, p in pred.named_parameters() if not decay(n, p)],
                "WD_exclude": True,
                "weight_decay": 0,
            },
        ]
        o, total = cfg.optim, cfg.train.max_steps
        self.optimizer = torch.optim.AdamW(groups, betas=tuple(o.betas), eps=o.eps)
        self.scheduler = _WarmupCosine(
            self.optimizer, o.warmup_steps, o.start_lr, o.lr, o.final_lr, total
        )
        self.wd_scheduler = _CosineWD(self.optimizer, o.weight_decay, o.final_weight_decay, total)
        self.mixed = cfg.train.mixed_precision != "no"
        self.dtype = torch.bfloat16 if cfg.train.mixed_precision == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.mixed else None
        self.clip_grad, self.reg_coeff, self.loss_exp = clip_grad, reg_coeff, cfg.objective.loss_exp
        self.momentum = (ema_at(i, start=o.ema[0], end=o.ema[1], total_steps=total)
                         for i in range(10**9))  # fmt: skip

    def __call__(self, clips: Tensor, masks_enc: list[Tensor], masks_pred: list[Tensor]) -> dict:
        jepa, opt = self.jepa, self.optimizer
        new_lr, new_wd = self.scheduler.step(), self.wd_scheduler.step()
        # torch.cuda.amp.autocast, as the reference has it: on a CPU it is off whatever the
        # config says (the reference trains in fp32 there).
        on_cuda = clips.device.type == "cuda"
        with torch.autocast("cuda", dtype=self.dtype, enabled=self.mixed and on_cuda):
            with torch.no_grad():
                h = jepa.target_encoder(clips)  # [B, N, D]
                h = F.layer_norm(h, (h.size(-1),))
                h = _ref_apply_masks(h, masks_pred)  # [B, Kt, D] each
            z = [jepa.encoder(clips, masks=[m])[0] for m in masks_enc]  # whole encoder per mask
            z = [
                jepa.predictor(zi, mc, mt, mask_index=i)
                for i, (zi, mc, mt) in enumerate(zip(z, masks_enc, masks_pred))
            ]
            loss_jepa = 0.0
            for zi, hi in zip(z, h):
                loss_jepa += torch.mean(torch.abs(zi - hi) ** self.loss_exp) / self.loss_exp
            loss_jepa /= len(masks_pred)
            pstd_z = sum(torch.sqrt(zi.var(dim=1) + 0.0001) for zi in z) / len(z)
            loss_reg = torch.mean(F.relu(1.0 - pstd_z))
        loss = loss_jepa + self.reg_coeff * loss_reg
        if self.mixed:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        enc_norm = torch.nn.utils.clip_grad_norm_(jepa.encoder.parameters(), self.clip_grad)
        pred_norm = torch.nn.utils.clip_grad_norm_(jepa.predictor.parameters(), self.clip_grad)
        if self.mixed:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        grad_stats = _grad_logger(jepa.encoder.named_parameters()) | {"norm": float(enc_norm)}
        grad_pred = _grad_logger(jepa.predictor.named_parameters()) | {"norm": float(pred_norm)}
        opt.zero_grad()
        optim_stats = _adamw_logger(opt)
        m = next(self.momentum)
        with torch.no_grad():
            for q, k in zip(jepa.encoder.parameters(), jepa.target_encoder.parameters()):
                k.data.mul_(m).add_((1.0 - m) * q.detach().data)
        flat = clips.view(clips.shape[0], -1)
        input_var = float(flat.var(dim=1).mean(dim=0))  # AllReduce.apply: identity on 1 rank
        input_var_min = float(torch.min(flat.var(dim=1)))
        return {
            "loss": float(loss),  # the reference's float() of the graph's output
            "loss_jepa": float(loss_jepa),
            "loss_reg": float(loss_reg),
            "lr": new_lr,
            "wd": new_wd,
            "grad": grad_stats,
            "grad_pred": grad_pred,
            "optim": optim_stats,
            "input_var": (input_var, input_var_min),
        }


# ----------------------------------------------------------------------------------------
# Harness
# ----------------------------------------------------------------------------------------


def make_steps(
    cfg: Config, batch: dict, device: str = "cpu"
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(ours, reference): two zero-argument step functions on equal models and the same batch.

    The batch is moved to ``device`` once (both steps then read it from there).
    """
    AcceleratorState._reset_state()
    GradientState._reset_state()
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=cfg.train.mixed_precision)
    batch = {
        k: [t.to(accelerator.device) for t in v]
        if isinstance(v, list)
        else v.to(accelerator.device)
        for k, v in batch.items()
    }
    run = prepare_run(cfg, pretrain_task(), accelerator)
    state = {"step": 0}

    def ours() -> None:
        step = state["step"]
        result = optimizer_step(run, [batch], step=step)
        count_step(run, result, step)
        if run.counters.step % cfg.run.log_every == 0:
            run.window.reset()  # the log row's one read-back is timed by bench_model
        state["step"] += 1

    ref_model = pretrain_task().build_model(cfg).to(accelerator.device)  # same seeded weights
    ref_model.predictor.last_block_targets_only = False  # the official predictor: all tokens
    reference = ReferenceStep(cfg, ref_model, clip_grad=cfg.optim.clip_grad or 10.0)
    clips, ctx, tgt = batch["video"], batch["ctx_idx"], batch["tgt_idx"]

    def ref() -> None:
        reference(clips, ctx, tgt)

    return ours, ref


def _time(fn: Callable[[], None], steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step. CPU time (this process, all its threads) is what a busy
    shared machine does not inflate; with one thread it is the step's own work."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps, (time.process_time() - c) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="?", default="configs/pretrain/demo_cpu.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=3, help="steps per side per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, [*args.overrides, f"run.dir={tmp}", "run.trackers=[]"])
        ours, ref = make_steps(cfg, synthetic_batch(cfg))
        for _ in range(args.warmup):
            ours()
            ref()
        wall: dict[str, list[float]] = {"ours": [], "ref": []}
        cpu: dict[str, list[float]] = {"ours": [], "ref": []}
        for r in range(args.rounds):
            order = [("ours", ours), ("ref", ref)]
            for name, fn in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
                w, c = _time(fn, args.steps)
                wall[name].append(w)
                cpu[name].append(c)
    med = statistics.median
    lines = [
        f"config={args.config} {' '.join(args.overrides)} threads={args.threads} "
        f"batch={cfg.data.batch_size}x{cfg.data.num_clips} clip={cfg.data.frames_per_clip}x"
        f"{cfg.data.crop_size}^2 pos={cfg.model.pos_embed} rounds={args.rounds}x{args.steps}"
    ]
    for label, t in (("wall", wall), ("cpu", cpu)):
        ratios = [a / b for a, b in zip(t["ours"], t["ref"])]
        lines.append(
            f"{label:4s} ours {med(t['ours']) * 1e3:7.1f} ms/step  reference "
            f"{med(t['ref']) * 1e3:7.1f} ms/step  ratio median {med(ratios):.3f} "
            f"(per-round min {min(ratios):.3f}, max {max(ratios):.3f})"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
