"""Issue 27: multi-step rollout training (objective.rollout), eb_jepa's multi-step predictor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_utils import make_shards, tiny_overrides

from vjepa.config import ConfigError, load_config
from vjepa.eval.surprise.score import load_surprise_model, window_surprise
from vjepa.jepa.model import build_jepa, rollout_chunks
from vjepa.train.pretrain import pretrain

BASE = [
    "model.name=tiny_cpu", "model.patch_size=8", "model.pred_width=32", "model.pred_depth=1",
    "model.pred_heads=4", "data.crop_size=32", "data.frames_per_clip=8", "mask.kind=future",
    "mask.ratio=0.75", "objective.loss_exp=2",
]  # fmt: skip


def test_rollout_chunks_cut_the_future_in_time_order() -> None:
    tgt = torch.arange(16, 64).expand(2, 48)  # time steps 1, 2, 3 of 16 tokens each
    assert rollout_chunks(tgt, 16, 3) == [slice(0, 16), slice(16, 32), slice(32, 48)]
    assert rollout_chunks(tgt, 16, 2) == [slice(0, 32), slice(32, 48)]
    assert rollout_chunks(tgt, 16, 9) == [slice(0, 16), slice(16, 32), slice(32, 48)]
    assert rollout_chunks(tgt, 16, 1) == [slice(0, 48)]
    shuffled = torch.stack([torch.arange(16, 64), torch.arange(0, 48)])  # other time steps
    with pytest.raises(ValueError, match="same time steps"):
        rollout_chunks(shuffled, 16, 3)


def _clip(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_each_chunk_sees_the_predictions_before_it_and_nothing_after() -> None:
    """With rollout 3 on a 4-step grid (context: step 0), chunk k's prediction depends on the
    fed-back predictions of chunks < k and on nothing else that changed; rollout 1 leaves the
    predictor and its initialisation exactly as before."""
    ctx, tgt = [torch.arange(16).expand(2, 16)], [torch.arange(16, 64).expand(2, 48)]
    plain = build_jepa(load_config(None, BASE))
    model = build_jepa(load_config(None, [*BASE, "objective.rollout=3"]))
    assert not hasattr(plain.predictor, "rollout_embed")
    shared = {k: v for k, v in model.state_dict().items() if "rollout_embed" not in k}
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in shared.items())
    video = _clip(0)
    with torch.no_grad():
        before = model.predict_targets(video, ctx, tgt).preds[0]  # [B, 48, D]
        first = plain.predict_targets(video, ctx, [tgt[0][:, :16]]).preds[0]  # step 1 alone
        assert torch.allclose(before[:, :16], first, atol=1e-6)  # chunk 1: from the context
        g = torch.Generator().manual_seed(5)  # change only how predictions come back in
        model.predictor.rollout_embed.weight.normal_(generator=g)
        after = model.predict_targets(video, ctx, tgt).preds[0]
    assert torch.equal(after[:, :16], before[:, :16])
    assert (after[:, 16:32] - before[:, 16:32]).abs().amax() > 1e-4  # float noise: ~1e-7
    assert (after[:, 32:] - before[:, 32:]).abs().amax() > 1e-4
    with torch.no_grad():  # chunk 3 by hand: the context plus chunks 1 and 2 fed back
        z = model.encoder(video, masks=ctx)[0]
        hand = model.predictor(z, ctx[0], tgt[0][:, 32:], 0, after[:, :32], tgt[0][:, :32])
    assert torch.allclose(hand, after[:, 32:], atol=1e-6)
    # gradients run through the whole rollout: chunk 3's loss reaches the feedback weights
    model.zero_grad()
    out = model.predict_targets(video, ctx, tgt)
    (out.preds[0][:, 32:] - out.targets[0][:, 32:]).pow(2).mean().backward()
    assert model.predictor.rollout_embed.weight.grad.abs().sum() > 0
    assert model.predictor.predictor_embed.weight.grad.abs().sum() > 0


def test_rollout_needs_future_masks() -> None:
    with pytest.raises(ConfigError, match=r"objective.rollout 3 needs mask.kind future"):
        load_config(None, [*BASE, "mask.kind=tube", "objective.rollout=3"])
    with pytest.raises(ConfigError, match="objective.rollout"):
        load_config(None, [*BASE, "objective.rollout=0"])


def test_a_rollout_run_trains_and_scores_surprise_as_it_was_trained(tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards", per_class=2, per_shard=12)
    run = tmp_path / "run"
    extra = ["train.max_steps=2", "mask.kind=future", "objective.rollout=2"]
    pretrain(load_config(None, tiny_overrides(run, shards, *extra)))
    cfg = load_config(None, [f"surprise.model={run}", "data.frames_per_clip=8"])
    model = load_surprise_model(cfg).eval_()
    assert model.jepa.rollout == 2 and hasattr(model.jepa.predictor, "rollout_embed")
    video = _clip(1)
    with torch.no_grad():
        rolled = window_surprise(model, video, context_frames=2)  # [W]
        model.jepa.rollout = 1  # the same weights predicting at once
        at_once = window_surprise(model, video, context_frames=2)
    assert rolled.shape == (2,) and torch.isfinite(rolled).all()
    assert not torch.allclose(rolled, at_once)
