"""Issue 27: objective.centre_prob, centring some training batches of a plain-input encoder."""

from __future__ import annotations

import pytest
import torch

from vjepa.config import ConfigError, load_config
from vjepa.jepa.model import build_jepa

BASE = [
    "model.name=tiny_cpu", "model.patch_size=8", "model.pred_width=32", "model.pred_depth=1",
    "model.pred_heads=4", "data.crop_size=32", "data.frames_per_clip=8", "mask.kind=future",
    "objective.target_mode=delta", "objective.loss_exp=2",
]  # fmt: skip


def _losses(prob: float, clip: torch.Tensor, steps: int) -> list[float]:
    model = build_jepa(load_config(None, [*BASE, f"objective.centre_prob={prob}"]))
    ctx, tgt = [torch.arange(16).expand(2, 16)], [torch.arange(16, 64).expand(2, 48)]
    with torch.no_grad():
        out = [model(clip, ctx, tgt).loss.item() for _ in range(steps)]
    assert not model.encoder.centre_input and not model.target_encoder.centre_input  # restored
    return out


def test_a_centred_batch_cannot_see_a_still_background() -> None:
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(2, 3, 8, 32, 32, generator=g)
    still = clip + 2 * torch.randn(2, 3, 1, 32, 32, generator=g)  # the same background each frame
    # always centred: the background drops out of the input of both encoders, to float noise
    a, b = _losses(1.0, clip, 1), _losses(1.0, still, 1)
    assert abs(a[0] - b[0]) < 1e-4 * a[0]
    # never centred (the plain encoder): the background changes the loss
    a, b = _losses(0.0, clip, 1), _losses(0.0, still, 1)
    assert abs(a[0] - b[0]) > 1e-2 * a[0]
    # half the steps: a fixed draw per step, some centred and some not
    half, on, off = _losses(0.5, still, 12), _losses(1.0, still, 1)[0], _losses(0.0, still, 1)[0]
    centred = [abs(v - on) < 1e-6 for v in half]
    assert all(c or abs(v - off) < 1e-6 for v, c in zip(half, centred))
    assert 2 <= sum(centred) <= 10
    assert _losses(0.5, still, 12) == half  # the same draws again


def test_centre_prob_needs_a_plain_input() -> None:
    with pytest.raises(ConfigError, match="objective.centre_prob needs model.centre_input false"):
        load_config(None, [*BASE, "objective.centre_prob=0.5", "model.centre_input=true"])
    with pytest.raises(ConfigError, match="objective.centre_prob"):
        load_config(None, [*BASE, "objective.centre_prob=1.5"])
