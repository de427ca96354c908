"""JEPA objective: losses by hand, target encoder frozen, EMA math, one real training step."""

from __future__ import annotations

import torch

from vjepa.config import MaskConfig, PretrainRoot
from vjepa.jepa.losses import covariance_loss, jepa_loss, normalize_targets, variance_loss
from vjepa.jepa.masks import MaskCollator
from vjepa.jepa.model import build_jepa
from vjepa.train.metrics import effective_rank, feature_std


def _cfg(pos: str = "sincos", kind: str = "multiblock") -> PretrainRoot:
    cfg = PretrainRoot()
    cfg.model.name = "tiny_cpu"
    cfg.model.pos_embed = pos
    cfg.model.pred_width, cfg.model.pred_depth, cfg.model.pred_heads = 48, 2, 3
    cfg.data.frames_per_clip, cfg.data.crop_size = 4, 32
    cfg.model.patch_size = 8
    cfg.mask = MaskConfig(kind=kind)
    return cfg


def test_jepa_loss_by_hand() -> None:
    p = [torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.0, 0.0]]])]
    t = [torch.tensor([[[0.0, 0.0]]]), torch.tensor([[[3.0, -1.0]]])]
    # pair means: (1 + 2)/2 = 1.5 and (3 + 1)/2 = 2 -> 1.75
    assert jepa_loss(p, t).item() == 1.75
    # exp 2: (1 + 4)/2/2 = 1.25 and (9 + 1)/2/2 = 2.5 -> 1.875
    assert jepa_loss(p, t, exp=2.0).item() == 1.875


def test_normalize_targets_uses_eps_1e5() -> None:
    h = torch.tensor([[1.0, 1.0 + 2e-3]])
    # var = 1e-6; with eps 1e-5 the normalised value is 1e-3 / sqrt(1.1e-5), not 1 (eps 1e-6 -> 0.707)
    expected = 1e-3 / (1e-6 + 1e-5) ** 0.5
    torch.testing.assert_close(
        normalize_targets(h)[0, 1], torch.tensor(expected), atol=1e-4, rtol=1e-4
    )


def test_variance_and_covariance_losses() -> None:
    collapsed = torch.ones(2, 5, 4)
    assert abs(variance_loss(collapsed).item() - (1 - 1e-2)) < 1e-6  # std = sqrt(0 + 1e-4)
    assert covariance_loss(collapsed).item() == 0.0
    spread = torch.randn(2, 4000, 4, generator=torch.Generator().manual_seed(0)) * 2
    assert variance_loss(spread).item() == 0.0  # std 2 > 1: hinge inactive
    assert covariance_loss(spread).item() < 0.05
    x = torch.randn(1, 4000, 1, generator=torch.Generator().manual_seed(1))
    correlated = torch.cat([x, x], dim=2)  # cov(a, b) = var = 1 -> off-diagonal sum 2 / D=2
    assert abs(covariance_loss(correlated).item() - 1.0) < 0.1


def _batch(jepa, cfg: PretrainRoot, batch: int = 2):
    grid = jepa.encoder.grid
    masks = MaskCollator(cfg.mask, grid)(batch, torch.Generator().manual_seed(0))
    video = torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    return video, masks


def test_training_step_target_frozen_and_ema() -> None:
    for pos, kind in [("sincos", "multiblock"), ("rope", "random")]:
        cfg = _cfg(pos, kind)
        jepa = build_jepa(cfg)
        assert jepa.predictor.mask_tokens.__len__() == (2 if kind == "multiblock" else 1)
        video, masks = _batch(jepa, cfg)
        out = jepa(video, masks["ctx_idx"], masks["tgt_idx"])
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert (
            set(out.terms) == {"l1"} and out.terms["l1"] == out.loss.detach()
        )  # 0-weight: skipped
        assert out.target_features.shape == (2, 32, 96) and not out.target_features.requires_grad
        out.loss.backward()
        assert all(p.grad is None for p in jepa.target_encoder.parameters())
        assert not any(p.requires_grad for p in jepa.target_encoder.parameters())
        assert jepa.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
        assert jepa.predictor.predictor_proj.weight.grad.abs().sum() > 0

        # EMA: target = m * target + (1 - m) * online, exactly.
        with torch.no_grad():
            for p in jepa.encoder.parameters():
                p.add_(0.1)
        before = [p.clone() for p in jepa.target_encoder.parameters()]
        online = [p.clone() for p in jepa.encoder.parameters()]
        jepa.update_target(0.9)
        for t0, o, t1 in zip(before, online, jepa.target_encoder.parameters()):
            torch.testing.assert_close(t1, 0.9 * t0 + 0.1 * o, atol=1e-7, rtol=0)


def test_regularisers_enter_the_loss() -> None:
    cfg = _cfg()
    cfg.objective.reg_var, cfg.objective.reg_cov = 0.5, 0.25
    jepa = build_jepa(cfg)
    video, masks = _batch(jepa, cfg)
    out = jepa(video, masks["ctx_idx"], masks["tgt_idx"])
    expected = out.terms["l1"] + 0.5 * out.terms["var"] + 0.25 * out.terms["cov"]
    torch.testing.assert_close(out.loss.detach(), expected)
    assert out.terms["var"] > 0


def test_build_jepa_is_seeded() -> None:
    a, b = build_jepa(_cfg()), build_jepa(_cfg())
    assert torch.equal(a.encoder.blocks[1].mlp.fc1.weight, b.encoder.blocks[1].mlp.fc1.weight)
    assert torch.equal(
        a.encoder.blocks[1].mlp.fc1.weight, a.target_encoder.blocks[1].mlp.fc1.weight
    )
    cfg = _cfg()
    cfg.run.seed = 1
    c = build_jepa(cfg)
    assert not torch.equal(a.encoder.blocks[1].mlp.fc1.weight, c.encoder.blocks[1].mlp.fc1.weight)


def test_overfits_one_batch() -> None:
    # The objective is learnable: 15 AdamW steps on one batch cut the loss substantially.
    cfg = _cfg()
    jepa = build_jepa(cfg)
    video, masks = _batch(jepa, cfg)
    params = [p for p in jepa.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3)
    losses = []
    for _ in range(15):
        out = jepa(video, masks["ctx_idx"], masks["tgt_idx"])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        jepa.update_target(0.99)
        losses.append(out.loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_health_metrics() -> None:
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(512, 16, generator=g)
    assert abs(feature_std(iso.view(8, 64, 16)) - 1.0) < 0.1
    assert feature_std(torch.ones(4, 5, 16)) == 0.0
    assert 14.0 < effective_rank(iso) <= 16.0
    line = torch.randn(512, 1, generator=g) * torch.randn(1, 16, generator=g)
    assert effective_rank(line) < 1.1
