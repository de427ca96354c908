"""Surprise of a video under a JEPA: slide its clip window, score each window's prediction.

In each window the context is the tokens of the first ``surprise.context_frames`` frames
(context encoder), the targets the tokens of the frames after them (target encoder on the whole
window, layer-normed and, for a run trained on ``objective.target_mode`` delta / centred /
change, made relative in time as in training): :meth:`vjepa.jepa.model.JEPA.predict_targets`, the
training forward itself. Surprise of a window = mean L1 between predictions and targets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vjepa.artifacts.arch import build_encoder_from_arch, build_predictor_from_arch
from vjepa.artifacts.encoder import frames_to_input
from vjepa.artifacts.official import load_state_strict
from vjepa.artifacts.sources import ExportSourceError, classify, read
from vjepa.config import Config, ConfigError, PretrainRoot
from vjepa.data.decode import open_video
from vjepa.errors import UsageError
from vjepa.jepa.model import JEPA, build_jepa
from vjepa.models.encoder import token_grid


@dataclass
class SurpriseModel:
    """What scoring needs: both encoders, the predictor and the clip geometry they take."""

    jepa: JEPA  # context encoder + predictor vs target encoder, as trained
    num_frames: int
    img_size: int
    patch_size: int
    tubelet_size: int
    source: str
    target_mode: str = "raw"  # objective.target_mode the predictor was trained for

    def eval_(self) -> SurpriseModel:
        self.jepa.eval().requires_grad_(False)
        return self


def load_surprise_model(cfg: Config) -> SurpriseModel:
    """``surprise.model``: ``random`` (the config's architecture, seeded by run.seed), one of
    our run / checkpoint / export folders (its saved predictor), or an official V-JEPA file."""
    source, mode = cfg.surprise.model, cfg.surprise.target_mode
    if source == "random":
        jepa = build_jepa(PretrainRoot(run=cfg.run, data=cfg.data, mask=cfg.mask, model=cfg.model))
        enc = jepa.target_encoder
        return SurpriseModel(
            jepa=JEPA(jepa.encoder, jepa.predictor, target_encoder=enc),
            num_frames=cfg.data.frames_per_clip,
            img_size=cfg.data.crop_size,
            patch_size=enc.patch_size,
            tubelet_size=enc.tubelet_size,
            source="random",
            target_mode="raw" if mode == "auto" else mode,
        ).eval_()
    model = _saved(cfg, source)
    if mode != "auto":
        model.target_mode = mode
    return model.eval_()


def _saved(cfg: Config, source: str) -> SurpriseModel:
    """A saved model (run, checkpoint, export folder or official file): the target encoder,
    its predictor and the context encoder as in training (else the target encoder).

    Head counts: ``surprise.num_heads`` / ``pred_num_heads``, else the stored or official counts,
    else :func:`vjepa.artifacts.official.resolve_heads`' checked head-dim-64 guess.
    """
    s = cfg.surprise
    heads = {"num_heads": s.num_heads, "pred_num_heads": s.pred_num_heads}
    with warnings.catch_warnings():
        # Surprise needs the teacher itself, even a frozen (never trained) one.
        warnings.filterwarnings("ignore", message=".*never trained.*")
        loaded = read(source, which="target", with_extras=True, **heads)
        if "predictor" not in loaded.extras or loaded.predictor_arch is None:
            error = ConfigError if classify(source) == "official" else ExportSourceError
            raise error(
                f"surprise.model: {source} holds no predictor; surprise needs encoder + "
                "predictor (a pretraining run / checkpoint folder, an official file, or an "
                "export made with its predictor)"
            )
        context_state, context_arch = loaded.extras.get("context"), loaded.arch
        if context_state is None:
            try:  # the context (online) encoder, as in training; else the target encoder
                context = read(source, which="context", num_heads=s.num_heads)
                context_state, context_arch = context.state, context.arch
            except ExportSourceError:
                context_state = None
    target = build_encoder_from_arch(loaded.arch)
    load_state_strict(target, loaded.state, f"{source} (target encoder)")
    predictor = build_predictor_from_arch(loaded.predictor_arch)
    load_state_strict(predictor, loaded.extras["predictor"], f"{source} (predictor)")
    context = target
    if context_state is not None:
        context = build_encoder_from_arch(context_arch)
        load_state_strict(context, context_state, f"{source} (context encoder)")
    trained = loaded.provenance.get("config", {})
    jepa = JEPA(context, predictor, target_encoder=target)
    jepa.rollout = trained.get("rollout", 1)  # predict as trained (older runs: at once)
    mode = trained.get("target_mode", "raw")  # older runs: raw
    return SurpriseModel(jepa, **_geometry(target), source=str(source), target_mode=mode)


def _geometry(encoder: nn.Module) -> dict[str, int]:
    return {
        "num_frames": encoder.num_frames,
        "img_size": encoder.img_size,
        "patch_size": encoder.patch_size,
        "tubelet_size": encoder.tubelet_size,
    }


# ----------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------


def window_starts(num_source_frames: int, window: int, frame_step: int, stride: int) -> list[int]:
    """First source frame of every window that fits: 0, stride, 2*stride, ..."""
    span = (window - 1) * frame_step + 1  # source frames one window covers
    return list(range(0, num_source_frames - span + 1, stride))


def context_target_indices(
    grid: tuple[int, int, int], context_frames: int, tubelet: int
) -> tuple[Tensor, Tensor]:
    """Flat token indices of the first ``context_frames`` frames and of the rest: [Kc], [Kt]."""
    t, h, w = grid
    split = (context_frames // tubelet) * h * w  # tokens are ordered (time, row, column)
    n = t * h * w
    return torch.arange(split), torch.arange(split, n)


def check_context(cfg: Config, model: SurpriseModel) -> int:
    c, tub, frames = cfg.surprise.context_frames, model.tubelet_size, model.num_frames
    if c % tub or not 0 < c < frames:
        raise ConfigError(
            f"surprise.context_frames must be a multiple of the tubelet size ({tub}) within "
            f"(0, {frames}) for this model's {frames}-frame window, got {c}"
        )
    return c


@torch.no_grad()
def window_surprise(
    model: SurpriseModel, clips: Tensor, context_frames: int, mask_index: int = 0
) -> Tensor:
    """Surprise of each window ``clips`` [W, 3, T, H, W] (ImageNet-normalised) -> [W]."""
    W, _, T, H, Wd = clips.shape
    grid = token_grid(T, H, Wd, model.patch_size, model.tubelet_size)
    ctx, tgt = context_target_indices(grid, context_frames, model.tubelet_size)
    ctx_idx = ctx.to(clips.device).expand(W, -1)  # [W, Kc]
    tgt_idx = tgt.to(clips.device).expand(W, -1)  # [W, Kt]
    # targets as in training: a delta is taken against the last context time step
    jepa = model.jepa
    jepa.target_mode, jepa.time_steps = model.target_mode, grid[0]
    jepa.delta_ref = context_frames // model.tubelet_size - 1
    out = model.jepa.predict_targets(clips, [ctx_idx], [tgt_idx], mask_index=mask_index)
    return (out.preds[0] - out.targets[0]).abs().mean(dim=(1, 2))  # [W]


def _load_video(path: Path, cfg: Config, img_size: int) -> Tensor:
    """All frames of ``path``, short side resized and centre-cropped: float [3, F, S, S]."""
    with open_video(path.read_bytes(), backend=cfg.data.decoder) as reader:
        frames = reader.get_frames(range(reader.num_frames))  # [F, H, W, 3] uint8
    return frames_to_input(frames, img_size)[0]  # [3, F, S, S]


def video_surprise(
    model: SurpriseModel, path: Path, cfg: Config, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Surprise curve of one video: ``{"frames": [...], "surprise": [...], "max", "mean"}``.

    ``frames[i]`` is the source frame where window i's targets start (the first predicted frame).
    """
    s = cfg.surprise
    step = cfg.data.frame_step
    video = _load_video(path, cfg, model.img_size)  # [3, F, S, S]
    starts = window_starts(video.shape[1], model.num_frames, step, s.stride)
    if not starts:
        need = (model.num_frames - 1) * step + 1
        raise UsageError(
            f"{path}: {video.shape[1]} frames, a {model.num_frames}-frame window at "
            f"data.frame_step={step} needs {need}"
        )
    offsets = torch.arange(model.num_frames) * step  # [T]
    curve: list[float] = []
    for i in range(0, len(starts), s.batch_size):
        idx = torch.tensor(starts[i : i + s.batch_size])[:, None] + offsets  # [W, T]
        clips = video[:, idx].permute(1, 0, 2, 3, 4).to(device)  # [W, 3, T, S, S]
        curve += window_surprise(model, clips, s.context_frames, s.mask_index).tolist()
    return {
        "frames": [st + s.context_frames * step for st in starts],
        "surprise": [round(v, 6) for v in curve],
        "max": max(curve),
        "mean": sum(curve) / len(curve),
    }
