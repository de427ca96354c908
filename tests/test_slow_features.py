"""The slow-feature trap (issue 27): the levers (time-relative targets, the within-clip variance
hinge) and the health metrics, each on hand-made features where a slow-feature solution and a
moving object are known."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from train_utils import make_shards, tiny_overrides

from vjepa.config import ConfigError, load_config
from vjepa.jepa.losses import jepa_loss, temporal_targets, time_variance_loss
from vjepa.jepa.model import build_jepa
from vjepa.train.metrics import moving_loss_share, read_metrics, within_across_std
from vjepa.train.pretrain import pretrain

T, H, W, D = 4, 4, 4, 8  # token grid and width of the hand-made clips


def _scene(g: torch.Generator, b: int = 6, moving: bool = True) -> tuple[torch.Tensor, list]:
    """Layer-norm-like teacher tokens [B, T*H*W, D] of a static background (random per clip and
    position, the same at every time step) with an object token stepping right one token per
    time step (or staying put); returns them and the object's (t, spatial index) cells."""
    bg = torch.randn(b, 1, H * W, D, generator=g).expand(b, T, H * W, D).clone()  # [B, T, S, D]
    obj = torch.randn(b, D, generator=g) * 2.0  # the object's look, [B, D]
    cells = []
    for t in range(T):
        s = 5 + (t if moving else 0)  # row 1, column 1 + t
        bg[:, t, s] = obj
        cells.append((t, s))
    return bg.reshape(b, T * H * W, D), cells


def test_delta_targets_leave_only_what_moves() -> None:
    g = torch.Generator().manual_seed(0)
    x, cells = _scene(g)
    delta = temporal_targets(x, T, "delta").view(-1, T, H * W, D)
    touched = {s for _, s in cells}
    static = [s for s in range(H * W) if s not in touched]
    assert delta[:, :, static].abs().max() == 0  # the static background: exactly 0
    assert delta[:, 1:, sorted(touched)].abs().amax(dim=(0, 1, 3)).min() > 0.1  # the object
    centred = temporal_targets(x, T, "centred").view(-1, T, H * W, D)
    assert centred[:, :, static].abs().max() < 1e-6
    assert torch.equal(temporal_targets(x, T, "raw"), x)
    change = temporal_targets(x, T, "change").view(-1, T, H * W, D)
    assert torch.equal(change, delta.abs()) and change[:, :, static].max() == 0
    with pytest.raises(ValueError, match="target mode"):
        temporal_targets(x, T, "mean")


def test_delta_targets_penalise_a_background_copy_only_when_something_moves() -> None:
    """The slow-feature solution (copy the context frame: predict delta 0) pays the whole loss
    on the object tokens under delta targets; on a clip where nothing moves it is exact."""
    g = torch.Generator().manual_seed(1)
    for moving, expect_loss in ((True, True), (False, False)):
        x, _ = _scene(g, moving=moving)
        tgt = temporal_targets(x, T, "delta")[:, H * W :]  # the 3 future time steps [B, 48, D]
        copy = torch.zeros_like(tgt)  # the background copy, in delta form
        loss = jepa_loss([copy], [tgt], exp=2.0)
        assert (loss > 0.01) == expect_loss
        assert jepa_loss([tgt.clone()], [tgt], exp=2.0) == 0  # knowing the motion: exact
    # raw targets: the same copy costs nothing on the static tokens either, but a predictor that
    # has not learnt to copy yet pays mostly on the background (the object is 2 of 16 tokens)
    x, cells = _scene(g)
    tgt = x[:, H * W :]
    per_token = (torch.zeros_like(tgt) - tgt).abs().mean(-1)  # [B, 48]
    moving = torch.zeros_like(per_token)
    for t, s in cells[1:]:
        moving[:, (t - 1) * H * W + s] = moving[:, (t - 1) * H * W + s - 1] = 1.0
    share = moving_loss_share(per_token, moving, threshold=0.5)["moving_loss_share"]
    assert share < 0.3


def test_time_variance_hinge_penalises_slow_features_not_moving_ones() -> None:
    g = torch.Generator().manual_seed(2)
    slow = torch.randn(8, 1, H * W, D, generator=g).expand(8, T, H * W, D).reshape(8, -1, D)
    moving = 2.0 * torch.randn(8, T * H * W, D, generator=g)  # every token changes over time
    assert time_variance_loss(slow, T) > 0.95  # constant within the clip: full price
    assert time_variance_loss(moving, T) < 0.05
    # a time code shared by every clip (the same change over time everywhere) is no motion
    code = 3.0 * torch.randn(1, T, H * W, D, generator=g)
    timed = (slow.view(8, T, H * W, D) + code).reshape(8, -1, D)
    assert time_variance_loss(timed, T) > 0.95
    # across clips the slow features differ: the per-sample and batch terms do not see them
    assert slow.view(8, T, -1, D).std(dim=0).mean() > 0.8


def test_within_across_std_sees_slow_features() -> None:
    g = torch.Generator().manual_seed(3)
    slow = torch.randn(8, 1, H * W, D, generator=g).expand(8, T, H * W, D)
    m = within_across_std(slow)
    assert m["within_clip_std"] == 0 and m["across_clip_std"] > 0.8
    assert m["within_across_ratio"] == 0
    moving = torch.randn(8, T, H * W, D, generator=g)
    assert within_across_std(moving)["within_across_ratio"] > 0.8
    with pytest.raises(ValueError, match="B, T, S, D"):
        within_across_std(slow.reshape(8, -1, D))


def test_moving_loss_share_by_hand() -> None:
    loss = torch.tensor([[1.0, 1.0, 2.0, 0.0]])
    change = torch.tensor([[0.0, 0.1, 0.9, 2.0]])
    m = moving_loss_share(loss, change, threshold=0.5)
    assert m["moving_token_frac"] == 0.5 and m["moving_loss_share"] == 0.5
    assert math.isnan(moving_loss_share(torch.zeros(1, 2), change[:, :2])["moving_loss_share"])


def test_config_keys_are_checked() -> None:
    cfg = load_config(None, ["objective.target_mode=delta", "objective.time_var=0.5"])
    assert cfg.objective.target_mode == "delta" and cfg.objective.time_var == 0.5
    with pytest.raises(ConfigError, match="objective.target_mode"):
        load_config(None, ["objective.target_mode=mean"])
    with pytest.raises(ConfigError, match="objective.time_var"):
        load_config(None, ["objective.time_var=-1"])


def test_jepa_delta_mode_and_health_on_a_future_mask() -> None:
    cfg_overrides = [
        "model.name=tiny_cpu", "model.patch_size=8", "model.pred_width=32", "model.pred_depth=1",
        "model.pred_heads=4", "data.crop_size=32", "data.frames_per_clip=8", "mask.kind=future",
        "objective.target_mode=delta", "objective.loss_exp=2", "objective.time_var=1.0",
    ]  # fmt: skip
    model = build_jepa(load_config(None, cfg_overrides))
    video = torch.randn(2, 3, 8, 32, 32)
    n = 4 * 4 * 4
    ctx = [torch.arange(16).expand(2, 16)]  # the first time step
    tgt = [torch.arange(16, n).expand(2, n - 16)]
    out = model(video, ctx, tgt)
    assert set(out.terms) == {"l1", "time_var"} and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    health = model.health(video, ctx, tgt)
    for key in ("ctx_within_clip_std", "ctx_across_clip_std", "ctx_within_across_ratio"):
        assert math.isfinite(health[key]) and health[key] >= 0
    assert 0 <= health["moving_token_frac"] <= 1 and 0 <= health["moving_loss_share"] <= 1
    assert model.training  # health leaves the mode as it found it
    weighted = build_jepa(load_config(None, [*cfg_overrides, "objective.change_weight=5"]))
    out_w = weighted(video, ctx, tgt)  # same seed: same weights, same targets
    assert torch.isfinite(out_w.loss) and not torch.isclose(out_w.terms["l1"], out.terms["l1"])


def test_pretraining_logs_the_slow_feature_watch(tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards", per_class=2)
    run = tmp_path / "run"
    over = tiny_overrides(
        run, shards, "train.max_steps=5", "train.checkpoint_every=5", "mask.kind=future",
        "objective.target_mode=delta", "objective.loss_exp=2", "objective.time_var=0.1",
    )  # fmt: skip
    pretrain(load_config(None, over))
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "ctx_within_clip_std" in r]
    assert [r["step"] for r in rows] == [5]
    assert {"moving_loss_share", "moving_token_frac", "target_std", "time_var"} <= set(rows[0])


def test_patch_teacher_keeps_a_static_background_static() -> None:
    """objective.target_features=patch: a static background's delta targets are exactly 0 beside a
    moving square, while the full teacher's attention mixes the square into every token."""
    base = [
        "model.name=tiny_cpu", "model.patch_size=8", "model.pred_width=32", "model.pred_heads=4",
        "data.crop_size=32", "data.frames_per_clip=8", "mask.kind=future",
        "objective.target_mode=delta",
    ]  # fmt: skip
    g = torch.Generator().manual_seed(4)
    video = torch.randn(1, 3, 1, 32, 32, generator=g).expand(1, 3, 8, 32, 32).clone()
    for t in range(8):  # a bright square moving right by 1 px per frame in the top-left token row
        video[:, :, t, 1:6, 1 + t : 6 + t] = 3.0
    touched = {0, 1}  # spatial tokens (row 0, columns 0 and 1) the square ever covers
    static = [s for s in range(16) if s not in touched]
    deltas = {}
    for feats in ("patch", "encoder"):
        model = build_jepa(load_config(None, [*base, f"objective.target_features={feats}"]))
        _, targets, _ = model._targets(video)
        deltas[feats] = targets.view(1, 4, 16, -1)[:, 1:]  # [1, 3, S, D]
    assert deltas["patch"][:, :, static].abs().max() < 1e-5
    assert deltas["patch"][:, :, sorted(touched)].abs().max() > 0.1
    assert deltas["encoder"][:, :, static].abs().max() > 1e-3  # the teacher's attention mixes


def test_delta_is_taken_against_the_last_context_step() -> None:
    from vjepa.jepa.model import delta_reference

    base = ["mask.kind=future", "data.frames_per_clip=8", "model.tubelet_size=2"]
    refs = [
        delta_reference(load_config(None, [*base, f"mask.ratio={r}"])) for r in (0.75, 0.5, 0.25)
    ]
    assert refs == [0, 1, 2]  # 4 time steps: 1, 2 or 3 of them are context
    assert delta_reference(load_config(None, ["mask.kind=multiblock"])) == 0
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 3).reshape(1, 8, 3)  # value = t
    assert temporal_targets(x, 4, "delta", ref=2).view(4, 2, 3)[:, 0, 0].tolist() == [-2, -1, 0, 1]


def test_change_weights_put_the_loss_on_what_moves() -> None:
    """A background copy (the slow solution) pays on the object tokens only; change weights
    raise that share far above the tokens' count, and leave a still clip unweighted."""
    from vjepa.jepa.losses import change_weights

    g = torch.Generator().manual_seed(5)
    x, cells = _scene(g)  # the object steps right one token per time step
    w = change_weights(x, T, 0, strength=10.0)  # [B, N]
    assert torch.allclose(w.mean(dim=1), torch.ones(len(w)))
    moving = torch.zeros(T, H * W)
    for t, s in cells[1:]:
        moving[t, s] = moving[t, cells[0][1]] = 1.0
    moving = moving.flatten().bool()
    assert w[:, moving].min() > 3 * w[:, ~moving].max()
    still, _ = _scene(g, moving=False)
    assert torch.allclose(change_weights(still, T, 0, 10.0), torch.ones(6, T * H * W))
    cfg = load_config(None, ["objective.change_weight=2"])
    assert cfg.objective.change_weight == 2
    with pytest.raises(ConfigError, match="objective.change_weight"):
        load_config(None, ["objective.change_weight=-1"])
