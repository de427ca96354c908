"""Issue 27, session 7: pixel targets (VideoMAE-style) and a frozen pretrained teacher (SALT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_utils import make_shards, tiny_overrides

import vjepa
from vjepa.artifacts.export import export
from vjepa.artifacts.sources import read, trained_encoder
from vjepa.config import ConfigError, load_config
from vjepa.demo.pretrain import probe_overrides
from vjepa.jepa.model import build_jepa
from vjepa.jepa.pixels import pixel_targets, tubelet_pixels
from vjepa.train.pretrain import pretrain

BASE = [
    "model.name=tiny_cpu", "model.patch_size=8", "model.pred_width=32", "model.pred_depth=1",
    "model.pred_heads=4", "data.crop_size=32", "data.frames_per_clip=8", "mask.kind=future",
    "objective.loss_exp=2",
]  # fmt: skip


def _future_masks(b: int = 2) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Context: the first of 4 time steps (16 tokens each); targets: the other 48."""
    return [torch.arange(16).expand(b, 16)], [torch.arange(16, 64).expand(b, 48)]


def test_tubelet_pixels_by_hand() -> None:
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, 3, 4, 6, 4, generator=g)  # [B, C, T, H, W]
    tokens = tubelet_pixels(video, patch=2, tubelet=2)  # grid (2, 3, 2): 12 tokens of 24
    assert tokens.shape == (2, 12, 24)
    for t, y, x in ((0, 0, 0), (1, 2, 1), (0, 1, 1)):
        n = t * 6 + y * 2 + x  # (t, h, w) token order
        want = video[:, :, 2 * t : 2 * t + 2, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2]  # [B,C,2,2,2]
        assert torch.equal(tokens[:, n], want.reshape(2, -1))
    normed = pixel_targets(video, 2, 2, "pixels")
    raw = tokens[1, 7].double()
    mean, std = raw.sum() / 24, ((raw - raw.sum() / 24).pow(2).sum() / 23).sqrt()
    assert torch.allclose(normed[1, 7].double(), (raw - mean) / (std + 1e-6), atol=1e-6)
    assert torch.allclose(normed.mean(-1), torch.zeros(2, 12), atol=1e-5)
    with pytest.raises(ValueError, match="tubelets"):
        tubelet_pixels(video, patch=4, tubelet=2)


def test_diff_pixels_are_zero_on_a_static_background() -> None:
    g = torch.Generator().manual_seed(1)
    video = torch.randn(1, 3, 1, 32, 32, generator=g).expand(1, 3, 8, 32, 32).clone()
    assert pixel_targets(video, 8, 2, "diff_pixels").abs().max() == 0  # nothing moves
    for t in range(8):  # a square moving right 1 px per frame in the top-left token row
        video[:, :, t, 1:6, 1 + t : 6 + t] = 3.0
    diff = pixel_targets(video, 8, 2, "diff_pixels").view(1, 4, 16, -1)  # [B, T, S, P]
    touched = [0, 1]  # the spatial tokens the square ever covers
    assert diff[:, :, 2:].abs().max() == 0  # the static background: exactly 0
    assert diff[:, 1:, touched].abs().amax(dim=(0, 2, 3)).min() > 1.0  # it moves every step
    # the first frame has no previous one: its difference is 0 (as the encoder's frame_diff)
    first = torch.zeros_like(video)
    first[:, :, 1:] = video[:, :, 1:] - video[:, :, :-1]
    assert torch.equal(diff.reshape(1, 64, -1), tubelet_pixels(first, 8, 2))


@pytest.mark.parametrize("kind", ["pixels", "diff_pixels"])
def test_jepa_regresses_pixel_targets(kind: str) -> None:
    cfg = load_config(None, [*BASE, f"objective.target_features={kind}"])
    model = build_jepa(cfg)
    assert model.predictor.predictor_proj.out_features == 3 * 2 * 8 * 8
    video = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    ctx, tgt = _future_masks()
    out = model(video, ctx, tgt)
    pred = model.predictor(model.encoder(video, masks=ctx)[0], ctx[0], tgt[0])  # [B, 48, 384]
    want = pixel_targets(video, 8, 2, kind)[:, 16:]  # the target tokens' pixels
    assert torch.allclose(out.terms["l1"], ((pred - want) ** 2).mean() / 2, rtol=1e-5)
    out.loss.backward()
    assert model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert trained_encoder(cfg) == "context"  # no teacher: the context encoder trains
    over = probe_overrides(cfg, Path("p"), "RUN", {"train": "", "dev": ""}, "dev")
    assert "probe.encoder=context" in over  # even with an EMA schedule (cfg: default ema)


def test_teacher_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="objective.teacher"):
        load_config(None, ["objective.teacher=x", "objective.target_features=pixels"])
    with pytest.raises(ConfigError, match="objective.teacher"):
        load_config(None, ["objective.teacher=x", "objective.target=online"])
    with pytest.raises(ConfigError, match="objective.target_features"):
        load_config(None, ["objective.target=online", "objective.target_features=pixels"])


def test_a_pretrained_teacher_gives_the_targets_and_stays_frozen(tmp_path: Path) -> None:
    """objective.teacher (SALT stage 2): the loaded teacher's features are the exported
    encoder's, they stay the same through training steps (even with an EMA schedule), and a
    teacher on another token grid is one line naming the key."""
    shards = make_shards(tmp_path / "shards", per_class=2, per_shard=12)
    stage1 = tmp_path / "stage1"
    pixels = ["mask.kind=future", "objective.target_features=pixels", "objective.loss_exp=2"]
    over = tiny_overrides(stage1, shards, "train.max_steps=3", *pixels)
    pretrain(load_config(None, over))
    exported = export(stage1, tmp_path / "export")
    reference = vjepa.load_encoder(exported)
    assert reference.config["source"]["encoder"] == "context"  # the pixel-trained encoder
    stage2 = tmp_path / "stage2"
    teacher = [f"objective.teacher={exported}", "mask.kind=future", "optim.ema=[0.9,1.0]"]
    cfg = load_config(None, tiny_overrides(stage2, shards, "train.max_steps=4", *teacher))
    model = build_jepa(cfg)
    video = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = reference(video)  # [B, 64, 96]
        assert torch.equal(model._targets(video)[0], want)
    assert model.predictor.predictor_proj.out_features == reference.embed_dim
    assert not any(p.requires_grad for p in model.target_encoder.parameters())
    model.update_target(0.5)  # a pretrained teacher is never updated
    with torch.no_grad():
        assert torch.equal(model._targets(video)[0], want)
    assert trained_encoder(cfg) == "context"
    pretrain(cfg)  # 4 optimizer steps with an EMA schedule
    with pytest.warns(UserWarning, match="target encoder never trained"):
        after = vjepa.load_encoder(stage2, which="target")  # the checkpoint's teacher
    trained = vjepa.load_encoder(stage2)  # the default: the context encoder, which trained
    with torch.no_grad():
        assert torch.equal(after(video), want)
        assert not torch.allclose(trained(video), want)
    bad = load_config(None, [*tiny_overrides(stage2, shards), *teacher, "model.patch_size=16"])
    with pytest.raises(ConfigError, match=r"objective.teacher: .*patch_size 8.*patch_size 16"):
        build_jepa(bad)


def test_motion_teacher_ignores_a_still_background_and_reads_back(tmp_path: Path) -> None:
    """objective.teacher_input=diff (session 8): a frozen random teacher that sees only frame
    differences, so its targets of a clip do not change when a still background is added, while
    the student (RGB) does; a 2-step run's teacher and student read back with their own
    architectures (the surprise path reads both), and an EMA schedule is a config error."""
    cfg = load_config(None, [*BASE, "optim.ema=[1.0,1.0]", "objective.teacher_input=diff"])
    jepa = build_jepa(cfg)
    assert jepa.frozen_teacher and trained_encoder(cfg) == "context"
    assert jepa.target_encoder.patch_embed.proj.weight.shape[1] == 3  # differences only
    assert not jepa.target_encoder.rgb and jepa.encoder.rgb and not jepa.encoder.frame_diff
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(2, 3, 8, 32, 32, generator=g)
    still = clip + torch.randn(2, 3, 1, 32, 32, generator=g)  # the same background every frame
    with torch.no_grad():
        assert torch.allclose(jepa.target_encoder(clip), jepa.target_encoder(still), atol=1e-5)
        assert not torch.allclose(jepa.encoder(clip), jepa.encoder(still), atol=1e-3)
        ctx, tgt = _future_masks()
        before = [p.clone() for p in jepa.target_encoder.parameters()]
        jepa.update_target(0.5)  # a frozen teacher: no EMA step
        assert all(torch.equal(a, b) for a, b in zip(before, jepa.target_encoder.parameters()))
        assert jepa(clip, ctx, tgt).loss.item() > 0
    shards = make_shards(tmp_path / "shards", per_class=2, per_shard=12)
    run = tmp_path / "run"
    extra = ["train.max_steps=2", "optim.ema=[1.0,1.0]", "objective.teacher_input=diff"]
    pretrain(load_config(None, tiny_overrides(run, shards, *extra)))
    with pytest.warns(UserWarning, match="never trained"):
        target = read(run, which="target")
    assert target.arch["rgb"] is False and target.arch["frame_diff"] is True
    assert "rgb" not in read(run, which="context").arch  # the student: RGB, the default
    with pytest.raises(ConfigError, match="optim.ema"):
        load_config(None, [*BASE, "objective.teacher_input=diff"])
