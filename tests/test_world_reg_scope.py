"""world.reg_scope: the world model's SIGReg over 2 gloo ranks (global) == 1 process on the
concatenated batch, in loss and in gradients (issue #26, like objective.reg_scope)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_world_model import tiny_model
from torch import Tensor
from train_utils import spawn_ranks

from vjepa.config import load_config
from vjepa.config.load import ConfigError

WORLD, B = 2, 3  # each rank holds B of the 2B windows


def _model():
    torch.manual_seed(0)
    return tiny_model().double()


def _batch(model) -> tuple[Tensor, Tensor]:
    """(latents [2B, W, N, D], actions [2B, W-1, A]) in float64."""
    gen = torch.Generator().manual_seed(1)
    w, d = model.spec.window, model.encoder.embed_dim
    latents = torch.randn(WORLD * B, w, 16, d, generator=gen, dtype=torch.float64)
    actions = torch.rand(WORLD * B, w - 1, 2, generator=gen, dtype=torch.float64) * 2 - 1
    return latents, actions


def _loss(model, latents: Tensor, actions: Tensor, scope: str) -> tuple[Tensor, dict, list]:
    """(loss, terms, [grad of the latents, grads of the predictor])."""
    latents = latents.clone().requires_grad_(True)
    loss, terms = model(
        actions,
        latents=latents,
        rollout_steps=2,
        sigreg_weight=0.5,
        sigreg_generator=torch.Generator().manual_seed(7),  # alike on every rank
        reg_scope=scope,
    )
    loss.backward()
    grads = [p.grad.clone() for p in model.predictor.parameters() if p.grad is not None]
    return loss.detach(), terms, [latents.grad.clone(), *grads]


def _rank(rank: int, out: Path) -> None:
    """One gloo rank (train_utils.spawn_ranks): this rank's windows."""
    result = {}
    for scope in ("global", "local"):
        model = _model()
        latents, actions = _batch(model)
        mine = slice(rank * B, (rank + 1) * B)
        loss, terms, (g_latents, *grads) = _loss(model, latents[mine], actions[mine], scope)
        for g in grads:  # what DDP does to the parameters' gradients: the mean over ranks
            dist.all_reduce(g)
            g /= WORLD
        dist.all_reduce(loss)  # the loss of the global batch: the mean of the ranks' losses
        loss /= WORLD
        # the input of rank r gets WORLD x its share (DDP's mean divides it away downstream)
        result[scope] = (loss, terms["sigreg"], g_latents / WORLD, grads)
    torch.save(result, out / f"rank{rank}.pt")


def test_world_sigreg_on_two_ranks_equals_one_process(tmp_path: Path) -> None:
    spawn_ranks(_rank, WORLD, tmp_path)
    model = _model()
    latents, actions = _batch(model)
    loss, terms, (g_latents, *grads) = _loss(model, latents, actions, "global")
    assert grads and all(g.abs().max() > 1e-6 for g in grads)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        r_loss, r_sig, r_latents, r_grads = got["global"]
        assert abs(r_sig.item() - terms["sigreg"].item()) < 1e-6
        assert abs(r_loss.item() - loss.item()) < 1e-6
        want = g_latents[rank * B : (rank + 1) * B]
        assert want.abs().max() > 1e-4
        torch.testing.assert_close(r_latents, want, rtol=0, atol=1e-6)
        for g, w in zip(r_grads, grads, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
        # local: this rank's own statistic, which differs from the global one
        assert abs(got["local"][1].item() - terms["sigreg"].item()) > 1e-4


def test_world_reg_scope_is_a_config_key() -> None:
    assert load_config(None, [], command="world train").world.reg_scope == "global"
    cfg = load_config(None, ["world.reg_scope=local"], command="world train")
    assert cfg.world.reg_scope == "local"
    with pytest.raises(ConfigError, match="world.reg_scope"):
        load_config(None, ["world.reg_scope=everywhere"], command="world train")
