"""The object-position probe (issue 27): does a frozen encoder see where the object is?

The ``objects`` corpus knows the moving object's centre in every frame
(:func:`vjepa.data.synthetic.split_clip`). Each clip is rendered again in memory (no shards),
encoded once, and every time step of the token grid becomes one sample: its spatial tokens,
flattened, against the object's centre over that time step's frames. A ridge regression to the
(cos, sin) of the centre (the scene is a torus) is fitted on the train split and scored on
another split by the mean wrap-aware pixel error (:func:`vjepa.train.metrics.position_probe_error`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vjepa.data.augment import normalize
from vjepa.data.synthetic import STYLES, split_clip
from vjepa.train.metrics import position_probe_error


@torch.no_grad()
def position_samples(
    encoder: nn.Module,
    split: str,
    per_class: int,
    *,
    seed: int,
    frames_per_clip: int,
    frame_step: int,
    tubelet: int,
    size: int = 64,
    batch_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [M, S*D] and object centres [M, 2] of every time step of every ``objects`` clip
    of ``split`` (``per_class`` clips per class, corpus ``seed``); M = clips x time steps.

    The clip is frames 0, step, ... of the rendered clip (what a probe's first clip sees); a time
    step's centre is the circular mean of its ``tubelet`` frames' centres.
    """
    encoder.eval()
    span = frames_per_clip * frame_step
    count = per_class * len(STYLES["objects"])
    feats, centres = [], []
    for start in range(0, count, batch_size):
        clips, paths = [], []
        for i in range(start, min(start + batch_size, count)):
            frames, _, centre = split_clip(
                "objects", split, i, per_class, seed=seed, size=size, frames=span
            )
            clips.append(frames[::frame_step])  # [T, H, W, 3]
            paths.append(centre[::frame_step])  # [T, 2]
        video = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3)  # [B, 3, T, H, W]
        tokens = encoder(normalize(video))  # [B, N, D]
        b, n, d = tokens.shape
        steps = frames_per_clip // tubelet
        feats.append(tokens.view(b, steps, -1).reshape(b * steps, -1).float())  # [B*T', S*D]
        ang = torch.from_numpy(np.stack(paths)) * (2 * math.pi / size)  # [B, T, 2]
        ang = ang.view(b, steps, tubelet, 2)
        mean = torch.atan2(ang.sin().mean(2), ang.cos().mean(2))  # [B, T', 2]
        centres.append(((mean * size / (2 * math.pi)) % size).reshape(b * steps, 2))
    return torch.cat(feats), torch.cat(centres)


def position_probe(
    encoder: nn.Module,
    *,
    seed: int,
    splits: dict[str, int],
    eval_split: str,
    frames_per_clip: int,
    frame_step: int,
    tubelet: int,
    size: int = 64,
) -> dict[str, float]:
    """Fit on ``train``, score on ``eval_split`` (``splits``: clips per class of each split)."""
    common = dict(
        seed=seed,
        frames_per_clip=frames_per_clip,
        frame_step=frame_step,
        tubelet=tubelet,
        size=size,
    )
    tx, txy = position_samples(encoder, "train", splits["train"], **common)
    vx, vxy = position_samples(encoder, eval_split, splits[eval_split], **common)
    return position_probe_error(tx, txy, vx, vxy, float(size))
