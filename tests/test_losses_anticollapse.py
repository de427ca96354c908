"""Across-clip anti-collapse terms: batch VICReg and SIGReg by hand, and on a collapsing model."""

from __future__ import annotations

import pytest
import torch

from vjepa.config import MaskConfig, PretrainRoot
from vjepa.jepa.losses import (
    batch_covariance_loss,
    batch_variance_loss,
    epps_pulley,
    sigreg_loss,
    variance_loss,
)
from vjepa.jepa.masks import MaskCollator, future_masks
from vjepa.jepa.model import build_jepa


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_batch_variance_sees_the_collapse_the_per_sample_term_cannot() -> None:
    # Every clip has the same features, but the token positions differ from each other.
    per_position = torch.randn(1, 6, 4, generator=_gen(0)) * 3  # [1, N, D]
    same_clips = per_position.expand(8, -1, -1)  # [B, N, D]: a collapse across clips
    assert variance_loss(same_clips).item() < 0.05  # per-sample std over tokens: looks healthy
    assert abs(batch_variance_loss(same_clips).item() - (1 - 1e-2)) < 1e-5  # std = sqrt(1e-4)
    spread = torch.randn(4000, 2, 3, generator=_gen(1)) * 2  # std 2 across clips
    assert batch_variance_loss(spread).item() == 0.0
    half = torch.randn(4000, 2, 3, generator=_gen(2)) * 0.5  # std 0.5 -> hinge 0.5
    assert abs(batch_variance_loss(half).item() - 0.5) < 0.02
    # pooled [B, D] input: the same statistic with one slot
    assert abs(batch_variance_loss(same_clips[:, 0]).item() - (1 - 1e-2)) < 1e-5


def test_batch_covariance_by_hand() -> None:
    x = torch.randn(4000, 1, 1, generator=_gen(3))
    correlated = torch.cat([x, x], dim=2)  # [B, 1, 2]: cov(a, b) = 1 -> (1 + 1) / D=2 = 1
    assert abs(batch_covariance_loss(correlated).item() - 1.0) < 0.1
    independent = torch.randn(4000, 3, 2, generator=_gen(4))
    assert batch_covariance_loss(independent).item() < 0.01
    # exact small case: B=3 clips, D=2: a = (0, 1, 2), b = (0, 2, 4): cov = 2 -> 2*4/2 = 4
    exact = torch.tensor([[[0.0, 0.0]], [[1.0, 2.0]], [[2.0, 4.0]]])
    torch.testing.assert_close(batch_covariance_loss(exact), torch.tensor(4.0))


def test_epps_pulley_is_small_for_gaussians_and_large_for_collapse() -> None:
    gauss = torch.randn(512, 64, generator=_gen(5))
    stat = epps_pulley(gauss)  # [64]
    assert stat.shape == (64,) and stat.mean().item() < 3.0
    assert epps_pulley(torch.zeros(512, 64)).mean().item() > 100.0  # a point mass at 0
    assert epps_pulley(gauss * 0.1).mean().item() > 50.0  # right shape, wrong scale
    assert epps_pulley(gauss + 2.0).mean().item() > 100.0  # wrong mean
    # by hand, one sample at 0: ecf = 1, so T = sum_k w_k (1 - phi_k)^2, S = 1
    t = torch.linspace(0, 3, 17)
    phi = torch.exp(-0.5 * t**2)
    w = torch.full((17,), 2 * 3 / 16)
    w[0] = w[-1] = 3 / 16
    expected = (w * phi * (1 - phi) ** 2).sum()
    torch.testing.assert_close(epps_pulley(torch.zeros(1, 1))[0], expected)


def test_sigreg_separates_isotropic_from_collapsed_features() -> None:
    iso = torch.randn(256, 5, 32, generator=_gen(6))  # [B, N, D] ~ N(0, I) across clips
    collapsed = torch.randn(1, 5, 32, generator=_gen(7)).expand(256, -1, -1) * 3
    low = sigreg_loss(iso, _gen(8), num_slices=64).item()
    high = sigreg_loss(collapsed, _gen(8), num_slices=64).item()
    assert low < 3.0 and high > 30 * low
    # fresh directions per generator state, same value for the same seed
    a = sigreg_loss(iso, _gen(9), num_slices=16)
    assert torch.equal(a, sigreg_loss(iso, _gen(9), num_slices=16))


def test_future_masks_hide_whole_later_time_steps() -> None:
    target = future_masks(0.5, (4, 2, 3), batch=2)  # [2, 24]
    assert target.shape == (2, 24) and target.dtype == torch.bool
    assert not target[:, :12].any() and target[:, 12:].all()  # steps 2, 3 of 4
    assert future_masks(0.99, (4, 2, 3), 1).sum() == 18  # at most all but one step
    assert future_masks(0.01, (4, 2, 3), 1).sum() == 6  # at least one step
    masks = MaskCollator(MaskConfig(kind="future", ratio=0.5), (4, 2, 3))(2, _gen(0))
    assert masks["ctx_idx"][0].tolist() == [list(range(12))] * 2


def _cfg(target: str, sigreg: float) -> PretrainRoot:
    cfg = PretrainRoot()
    cfg.model.name, cfg.model.pos_embed, cfg.model.patch_size = "tiny_cpu", "rope", 8
    cfg.model.pred_width, cfg.model.pred_depth, cfg.model.pred_heads = 48, 1, 3
    cfg.data.frames_per_clip, cfg.data.crop_size = 4, 32
    cfg.mask = MaskConfig(kind="future", ratio=0.5)
    cfg.objective.target, cfg.objective.sigreg, cfg.objective.sigreg_slices = target, sigreg, 64
    return cfg


def _across_clip_std(cfg: PretrainRoot, steps: int) -> tuple[float, float]:
    """Across-clip std of the encoder's tokens (fixed positions) before and after training."""
    jepa = build_jepa(cfg)
    video = torch.randn(16, 3, 4, 32, 32, generator=_gen(1))  # 16 different clips
    masks = MaskCollator(cfg.mask, jepa.encoder.grid)(16, _gen(0))
    opt = torch.optim.AdamW([p for p in jepa.parameters() if p.requires_grad], lr=3e-3)

    def std() -> float:
        with torch.no_grad():
            return jepa.encoder(video).std(dim=0).mean().item()  # [B, N, D] -> over clips

    before = std()
    for _ in range(steps):
        out = jepa(video, masks["ctx_idx"], masks["tgt_idx"])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        jepa.update_target(0.0)
    return before, std()


@pytest.mark.slow
def test_online_target_collapses_without_a_regulariser_and_sigreg_prevents_it() -> None:
    before, collapsed = _across_clip_std(_cfg("online", 0.0), steps=20)
    _, kept = _across_clip_std(_cfg("online", 1.0), steps=20)
    assert collapsed < 0.1 * before  # the trivial solution: every clip the same features
    assert kept > 0.5 * before  # SIGReg holds the across-clip spread
    assert kept > 5 * collapsed


def test_zero_weight_terms_are_not_computed_and_positive_ones_enter_the_loss() -> None:
    cfg = _cfg("ema", 0.0)
    jepa = build_jepa(cfg)
    video = torch.randn(4, 3, 4, 32, 32, generator=_gen(2))
    masks = MaskCollator(cfg.mask, jepa.encoder.grid)(4, _gen(0))
    out = jepa(video, masks["ctx_idx"], masks["tgt_idx"])
    assert set(out.terms) == {"l1"}
    cfg.objective.batch_var, cfg.objective.batch_cov, cfg.objective.sigreg = 0.5, 0.25, 0.05
    jepa = build_jepa(cfg)
    out = jepa(video, masks["ctx_idx"], masks["tgt_idx"])
    assert set(out.terms) == {"l1", "batch_var", "batch_cov", "sigreg"}
    t = out.terms
    expected = t["l1"] + 0.5 * t["batch_var"] + 0.25 * t["batch_cov"] + 0.05 * t["sigreg"]
    torch.testing.assert_close(out.loss.detach(), expected)
    out.loss.backward()  # the ema-mode across-clip terms train the online encoder
    assert jepa.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
