"""Health metrics that see a collapse across clips (issue 11), and their plot."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vjepa.train.metrics import (
    across_clip_std,
    feature_std,
    health_metrics,
    position_share,
    rankme,
)
from vjepa.train.plots import plot_health


def _collapsed(g: torch.Generator, b: int = 16, n: int = 32, d: int = 24) -> torch.Tensor:
    """Every clip gets the same token map f(position), plus a speck of noise: [B, N, D]."""
    per_position = torch.randn(1, n, d, generator=g)  # f(position)
    return per_position.expand(b, n, d) + 1e-3 * torch.randn(b, n, d, generator=g)


def test_collapse_across_clips_is_seen_where_feature_std_is_blind() -> None:
    g = torch.Generator().manual_seed(0)
    x = _collapsed(g)
    # the old metric pools batch and positions: it looks perfectly healthy
    assert feature_std(x) > 0.8
    assert across_clip_std(x) < 0.01
    assert position_share(x) > 0.999
    m = health_metrics(x)
    assert m["clip_std"] < 0.01 and m["position_share"] > 0.999 and m["std"] > 0.8


def test_random_features_are_healthy() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 32, 24, generator=g)
    assert across_clip_std(x) == pytest.approx(1.0, abs=0.05)
    # per-position means of 16 iid clips carry 1/16 of the variance by chance
    assert position_share(x) == pytest.approx(1 / 16, abs=0.02)
    m = health_metrics(x)
    assert m["clip_std"] > 0.9 and m["position_share"] < 0.1
    assert set(m) == {"std", "rank", "rankme", "clip_std", "position_share"}


def test_position_share_by_hand() -> None:
    # two clips, two positions, one dim: values a + c with position effect +-1 and clip +-1
    x = torch.tensor([[[2.0], [0.0]], [[0.0], [-2.0]]])  # [B=2, N=2, D=1]
    # grand mean 0; total var = (4+0+0+4)/4 = 2; per-position means 1, -1 -> between = 1
    assert position_share(x) == pytest.approx(0.5)
    assert math.isnan(across_clip_std(x[:1]))


def test_rankme_centred() -> None:
    g = torch.Generator().manual_seed(2)
    iso = torch.randn(256, 16, generator=g)
    assert 14.0 < rankme(iso) <= 16.0
    # a shared offset plus variation along 2 directions: centred RankMe sees 2, not 3
    basis = torch.randn(2, 16, generator=g)
    low = 10.0 + torch.randn(256, 2, generator=g) @ basis
    assert rankme(low) < 2.1
    pooled = health_metrics(low)
    assert set(pooled) == {"std", "rank", "rankme"} and pooled["rankme"] < 2.1


def test_plot_health(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "loss": 1.0}]
    rows += [
        {
            "step": s,
            "target_clip_std": 1 / s,
            "target_position_share": 1 - 1 / s,
            "target_rankme": 5.0,
            "target_std": 1.0,
        }
        for s in (5, 10, 15)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_health(path, tmp_path / "health.png")
    assert out is not None and out.stat().st_size > 5000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    assert plot_health(empty, tmp_path / "none.png") is None
