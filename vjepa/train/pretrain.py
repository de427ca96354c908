"""V-JEPA pretraining: the JEPA model, the masked video batch stream and the forward.

``pretrain(cfg)`` runs (or resumes) a run in ``cfg.run.dir`` through the shared loop
(vjepa.train.loop: Accelerate, the optimizer step with the collective finite check, schedules, EMA
hook, atomic checkpoints, resume, metrics, trackers, tqdm, plots). What is pretraining's own:

- the model: :func:`vjepa.jepa.model.build_jepa` (context encoder, predictor, EMA target encoder),
  compiled in place when ``model.compile``; its EMA update is the loop's target hook;
- data position: with exact epochs (``data.resampled=false``) each rank's loader restarts at the
  exact sample it stopped at; with ``data.resampled=true`` the stream is infinite and random, so
  it is **resampled by design**: the loader reseeds from its batch count and the resumed run
  sees a fresh draw, not a replay;
- the forward: video (normalised on the device when it arrives as uint8) and the context /
  target masks of every mask generator; ``masks.png`` shows the first clip's masks;
- the online probe (``online_probe.*``: on once its two labelled shard sets are given, every
  ``online_probe.every`` = 1000 steps by default): kNN and linear top-1 of the trained encoder
  (vjepa.train.online_probe), the loop's periodic evaluation; ``train.keep_best`` can keep the best checkpoint by it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vjepa.artifacts.sources import trained_encoder
from vjepa.config import Config
from vjepa.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
from vjepa.data.loader import make_pretrain_loader
from vjepa.data.shards import expand_urls
from vjepa.jepa.masks import MaskCollator
from vjepa.jepa.model import build_jepa
from vjepa.train.loop import LaunchError, TrainingDivergedError, parameter_digest, run_training
from vjepa.train.online_probe import OnlineProbe
from vjepa.train.plots import plot_masks
from vjepa.train.state import Counters
from vjepa.train.step import schedule_values
from vjepa.train.task import StepOutput, Task

__all__ = [
    "Counters",
    "LaunchError",
    "TrainingDivergedError",
    "parameter_digest",
    "pretrain",
    "pretrain_task",
    "schedule_values",
    "token_grid",
]


def token_grid(cfg: Config) -> tuple[int, int, int]:
    """Token grid (t, h, w) of a training clip: (frames / tubelet, crop / patch, crop / patch)."""
    side = cfg.data.crop_size // cfg.model.patch_size
    return (cfg.data.frames_per_clip // cfg.model.tubelet_size, side, side)


def build_model(cfg: Config) -> nn.Module:
    """The JEPA of ``cfg`` (seeded from run.seed), compiled in place when ``model.compile``."""
    model = build_jepa(cfg)
    if cfg.model.compile:
        # In place (nn.Module.compile): state-dict keys stay the same, so checkpoints do too.
        for module in (model.encoder, model.target_encoder, model.predictor):
            module.compile(dynamic=True)
    return model


def make_batches(cfg: Config, rank: int, world_size: int, start: dict | None) -> Iterator[dict]:
    """This rank's endless batch stream (the loader splits shards by rank and worker itself).

    ``start`` (this rank's saved ``loader_state``) resumes exactly in exact mode; in resampled
    mode the loader reseeds from its batch count instead (resampled by design).
    """
    loader = make_pretrain_loader(
        cfg.data,
        mask_fn=MaskCollator(cfg.mask, token_grid(cfg)),
        seed=cfg.run.seed,
        rank=rank,
        world_size=world_size,
        start=start,
    )
    return iter(loader)


def video_on_device(batch: dict, cfg: Config, device: torch.device) -> torch.Tensor:
    """[B, C, T, H, W] float32 on ``device``; uint8 batches are normalised here (cheaper)."""
    video = batch["video"].to(device, non_blocking=True)
    if cfg.data.normalize_on_device or video.dtype == torch.uint8:
        video = normalize(video)  # [B, C, T, H, W] float32
    return video


def _forward(cfg: Config, model: nn.Module, batch: dict, device: torch.device) -> StepOutput:
    video = video_on_device(batch, cfg, device)  # [B, C, T, H, W]
    ctx = [m.to(device, non_blocking=True) for m in batch["ctx_idx"]]  # [B, Kc] each
    tgt = [m.to(device, non_blocking=True) for m in batch["tgt_idx"]]  # [B, Kt] each
    out = model(video, ctx, tgt)
    return StepOutput(loss=out.loss, terms=out.terms, features=out.target_features)


def _health(cfg: Config, model: nn.Module, batch: dict, device: torch.device) -> dict[str, float]:
    """The slow-feature watch of :meth:`vjepa.jepa.JEPA.health` on one batch (health steps)."""
    video = video_on_device(batch, cfg, device)  # [B, C, T, H, W]
    ctx = [m.to(device) for m in batch["ctx_idx"]]  # [B, Kc] each
    tgt = [m.to(device) for m in batch["tgt_idx"]]  # [B, Kt] each
    return model.health(video, ctx, tgt)


def _health_features(
    cfg: Config, model: nn.Module, batch: dict, device: torch.device
) -> dict[str, torch.Tensor]:
    """Health-step features of the full clip: the context encoder (the one that trains), and
    the target encoder only when it moves (an EMA teacher; a frozen one, ``optim.ema: [1, 1]``,
    is its random init, and ``objective.target: online`` copies the context encoder)."""
    video = video_on_device(batch, cfg, device)  # [B, C, T, H, W]
    out = {"context": model.encoder(video)}  # [B, N, D]
    if cfg.objective.target == "ema" and trained_encoder(cfg) == "target":
        out["target"] = model.target_encoder(video)  # [B, N, D]
    return out


def _update_target(model: nn.Module, momentum: float) -> None:
    model.update_target(momentum)


def _clip_frames(video: torch.Tensor) -> np.ndarray:
    """[C, T, H, W] (uint8, or ImageNet-normalised float) -> uint8 [T, H, W, 3] for plotting."""
    if video.dtype != torch.uint8:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
        video = ((video.float() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return video.permute(1, 2, 3, 0).numpy()  # [T, H, W, C]


def _plot_masks(cfg: Config, batch: dict, run_dir: Path) -> None:
    """masks.png: clip 0 of the first batch with the context / target masks of each pair."""
    frames = _clip_frames(batch["video"][0].detach().cpu())  # [T, H, W, 3]
    pairs = [(c[0].cpu(), t[0].cpu()) for c, t in zip(batch["ctx_idx"], batch["tgt_idx"])]
    plot_masks(frames, pairs, token_grid(cfg), run_dir / "masks.png")


def pretrain_task() -> Task:
    """Pretraining as a :class:`vjepa.train.task.Task` (every part takes the loop's config)."""
    return Task(
        name="pretrain",
        build_model=build_model,
        batches=make_batches,
        forward=_forward,
        update_target=_update_target,
        rows=lambda batch: int(batch["video"].shape[0]),  # B * data.num_clips clips
        plot_first_batch=_plot_masks,
        health=_health,
        health_features=_health_features,
        evaluate=OnlineProbe(),  # online_probe.*: kNN and linear top-1 every N steps
        eval_every=lambda cfg: cfg.online_probe.interval(),
    )


def pretrain(cfg: Config, *, nan_steps: Collection[int] = ()) -> Path:
    """Run (or resume) V-JEPA pretraining into ``cfg.run.dir``; returns the run folder.

    ``nan_steps``: steps whose loss is replaced by NaN (test hook for the skip / stop path).
    """
    expand_urls(cfg.data.shards)  # a wrong shard path fails here, before the run folder exists
    if cfg.online_probe.interval():
        expand_urls(cfg.online_probe.train_shards)
        expand_urls(cfg.online_probe.val_shards)
    return run_training(cfg, pretrain_task(), nan_steps=nan_steps)
