"""objective.reg_scope in the JEPA: 2 gloo ranks (global) == 1 process on the concatenated batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn
from train_utils import spawn_ranks

from vjepa.config import ObjectiveConfig, load_config
from vjepa.config.load import ConfigError
from vjepa.jepa.model import JEPA

WORLD, B, C, T, HW, D = 2, 4, 3, 2, 4, 6  # each rank holds B of the 2B clips


class _TokenEncoder(nn.Module):
    """[B, C, T, H, W] -> [B, T*H*W, D]: a stand-in encoder whose features are the terms' input."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(C, D)

    def forward(self, video: Tensor) -> Tensor:
        return self.proj(video.flatten(2).transpose(1, 2))  # [B, N, D]


def _jepa(scope: str) -> JEPA:
    torch.manual_seed(0)
    return JEPA(
        _TokenEncoder().double(),
        nn.Identity(),
        ObjectiveConfig(
            batch_var=1.0, batch_cov=0.5, sigreg=0.3, sigreg_slices=16, reg_scope=scope
        ),
        seed=3,
    )


def _video() -> Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(WORLD * B, C, T, HW, HW, generator=gen, dtype=torch.float64)  # [2B,C,T,H,W]


def _terms(model: JEPA, video: Tensor) -> tuple[Tensor, dict[str, Tensor], list[Tensor]]:
    terms: dict[str, Tensor] = {}
    total = model._across_clip(video, None, [], terms)
    total.backward()
    return total.detach(), terms, [p.grad.clone() for p in model.encoder.parameters()]


def _rank(rank: int, out: Path) -> None:
    """One gloo rank (train_utils.spawn_ranks): this rank's half of the batch."""
    result = {}
    for scope in ("global", "local"):
        model = _jepa(scope)
        total, terms, grads = _terms(model, _video()[rank * B : (rank + 1) * B])
        for g in grads:  # what DDP does: the mean over ranks
            dist.all_reduce(g)
            g /= WORLD
        result[scope] = (total, terms, grads)
    torch.save(result, out / f"rank{rank}.pt")


def test_global_scope_on_two_ranks_equals_one_process(tmp_path: Path) -> None:
    spawn_ranks(_rank, WORLD, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    total, terms, grads = _terms(_jepa("global"), _video())
    assert set(terms) == {"batch_var", "batch_cov", "sigreg"}
    for got in ranks:
        g_total, g_terms, g_grads = got["global"]
        assert abs(g_total.item() - total.item()) < 1e-6
        for name in terms:
            assert abs(g_terms[name].item() - terms[name].item()) < 1e-6, name
        for g, want in zip(g_grads, grads):
            assert want.abs().max() > 1e-4
            torch.testing.assert_close(g, want, rtol=0, atol=1e-6)
        # local: each rank's own statistic, which differs from the global one
        assert abs(got["local"][0].item() - total.item()) > 1e-3


def test_reg_scope_is_a_config_key() -> None:
    assert load_config(None, []).objective.reg_scope == "global"
    assert load_config(None, ["objective.reg_scope=local"]).objective.reg_scope == "local"
    with pytest.raises(ConfigError, match="objective.reg_scope"):
        load_config(None, ["objective.reg_scope=everywhere"])
