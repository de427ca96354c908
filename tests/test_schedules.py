"""Schedules (hand-computed values) and the optimizer's parameter groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vjepa.config import OptimConfig
from vjepa.train.optim import build_optimizer, param_groups, set_schedules
from vjepa.train.schedules import ema_at, lr_at, wd_at

LR = dict(warmup_steps=10, start_lr=0.1, lr=1.0, final_lr=0.0, total_steps=110)


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.1),  # start of warmup
        (5, 0.55),  # mid-warmup: 0.1 + 0.9 * 5/10
        (10, 1.0),  # end of warmup = peak
        (35, 0.5 * (1 + math.cos(math.pi * 0.25))),  # a quarter into the cosine
        (60, 0.5),  # middle of the cosine
        (110, 0.0),  # end
        (500, 0.0),  # past the end holds the final value
    ],
)
def test_lr_warmup_then_cosine(step: int, expected: float) -> None:
    assert lr_at(step, **LR) == pytest.approx(expected, abs=1e-12)


def test_lr_without_warmup_and_nonzero_final() -> None:
    kw = dict(warmup_steps=0, start_lr=0.0, lr=2.0, final_lr=0.5, total_steps=100)
    assert lr_at(0, **kw) == pytest.approx(2.0)
    assert lr_at(50, **kw) == pytest.approx(1.25)
    assert lr_at(100, **kw) == pytest.approx(0.5)


def _probe_lr(step: int, total: int, warmup: int, peak: float) -> float:
    """The probe heads' schedule: warmup from 0 counted from the first step, cosine to 0."""
    return lr_at(step, warmup_steps=warmup, start_lr=0.0, lr=peak, final_lr=0.0,
                 total_steps=total, warmup_inclusive=True)  # fmt: skip


def test_lr_inclusive_warmup_of_the_probe_heads() -> None:
    assert _probe_lr(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert _probe_lr(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert _probe_lr(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert _probe_lr(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert _probe_lr(100, 100, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert _probe_lr(0, 10, 0, 2.0) == pytest.approx(2.0)
    assert math.isfinite(_probe_lr(5, 1, 0, 1.0))


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.04),
        (25, 0.04 + 0.36 * (1 - math.cos(math.pi / 4)) / 2),
        (50, 0.22),
        (100, 0.4),
        (150, 0.4),
    ],
)
def test_wd_cosine(step: int, expected: float) -> None:
    assert wd_at(step, start=0.04, end=0.4, total_steps=100) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "step, expected", [(0, 0.998), (25, 0.9985), (50, 0.999), (100, 1.0), (101, 1.0)]
)
def test_ema_linear(step: int, expected: float) -> None:
    assert ema_at(step, start=0.998, end=1.0, total_steps=100) == pytest.approx(expected, abs=1e-12)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)


def test_param_groups_exclude_bias_norm_tokens_and_frozen() -> None:
    toy = _Toy()
    decay, no_decay = param_groups([toy, toy], weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and decay["apply_wd"]
    assert no_decay["weight_decay"] == 0.0 and not no_decay["apply_wd"]
    assert [id(p) for p in decay["params"]] == [id(toy.proj.weight)]
    expected = {
        id(toy.pos_embed),
        id(toy.mask_token),
        id(toy.proj.bias),
        id(toy.norm.weight),
        id(toy.norm.bias),
    }
    assert {id(p) for p in no_decay["params"]} == expected
    assert len(no_decay["params"]) == len(expected)  # listed once although passed twice


def test_build_optimizer_and_set_schedules() -> None:
    toy = _Toy()
    cfg = OptimConfig(start_lr=0.01, weight_decay=0.04, betas=(0.8, 0.9), eps=1e-6)
    opt = build_optimizer(toy, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)
    set_schedules(opt, lr=0.5, wd=0.3)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]


def test_build_optimizer_without_trainable_parameters_is_an_error() -> None:
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(frozen, OptimConfig())


def test_fused_adamw_follows_the_default_adamw() -> None:
    """The loop's CPU choice (fused AdamW) takes the same steps as torch's default AdamW,
    scheduled lr / wd included, within float32 rounding."""
    cfg = OptimConfig(start_lr=0.01, weight_decay=0.04, betas=(0.8, 0.9), eps=1e-6)
    models = [_Toy(), _Toy()]
    models[1].load_state_dict(models[0].state_dict())
    start = [p.detach().clone() for p in models[0].parameters()]
    opts = [build_optimizer(models[0], cfg), build_optimizer(models[1], cfg, fused=True)]
    assert opts[1].defaults["fused"] and not opts[0].defaults["fused"]
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in models[0].parameters()]
        for model, opt in zip(models, opts):
            set_schedules(opt, lr=0.01 * (step + 1), wd=0.04 + 0.01 * step)
            for p, grad in zip(model.parameters(), grads):
                p.grad = grad.clone() if p.requires_grad else None
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    moved = [(a - s).abs().max().item() for a, s in zip(models[0].parameters(), start)]
    assert max(moved) > 0.05 and moved[-1] == 0.0  # trained; the frozen bias did not move
