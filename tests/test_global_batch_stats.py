"""Across-clip regularisers over the global batch: 2 gloo ranks == 1 process, within 1e-6."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from train_utils import spawn_ranks

from vjepa.jepa.gather import gather_batch
from vjepa.jepa.losses import batch_covariance_loss, batch_variance_loss, sigreg_loss

WORLD, B, N, D, IN = 2, 6, 3, 8, 5  # each rank holds B of the 2B clips


def _losses(x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)  # the same seed on every rank
    return {
        "var": batch_variance_loss(x),
        "cov": batch_covariance_loss(x),
        "sigreg": sigreg_loss(x, gen, num_slices=16),
    }


def _data(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(WORLD * B, N, D, generator=gen, dtype=dtype) * 0.7  # [2B, N, D]
    inputs = torch.randn(WORLD * B, N, IN, generator=gen)  # [2B, N, IN] for the DDP model
    return feats, inputs


def _rank(rank: int, out: Path) -> None:
    """One gloo rank (train_utils.spawn_ranks): this rank's half of the batch."""
    feats, inputs = _data(torch.float64)
    mine = slice(rank * B, (rank + 1) * B)
    result: dict[str, torch.Tensor] = {}
    # 1. Input gradients of each loss through the gathered batch.
    for name in ("var", "cov", "sigreg"):
        x = feats[mine].clone().requires_grad_(True)  # [B, N, D] this rank's half
        loss = _losses(gather_batch(x), seed=7)[name]
        loss.backward()
        result[f"{name}_loss"] = loss.detach()
        result[f"{name}_grad"] = x.grad
    # 2. What DDP produces: a linear layer, the three terms, gradients averaged by DDP.
    torch.manual_seed(0)
    # float64: the comparison below must not depend on the thread count of each process
    model = DistributedDataParallel(torch.nn.Linear(IN, D).double())
    z = model(inputs[mine].double())  # [B, N, D]
    total = sum(_losses(gather_batch(z), seed=7).values())
    total.backward()
    result["ddp_loss"] = total.detach()
    result["ddp_weight_grad"] = model.module.weight.grad
    result["ddp_bias_grad"] = model.module.bias.grad
    torch.save(result, out / f"rank{rank}.pt")


def test_two_ranks_equal_one_process_on_the_concatenated_batch(tmp_path: Path) -> None:
    spawn_ranks(_rank, WORLD, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    feats, inputs = _data(torch.float64)
    for name in ("var", "cov", "sigreg"):
        x = feats.clone().requires_grad_(True)  # [2B, N, D] one process, whole batch
        loss = _losses(x, seed=7)[name]
        loss.backward()
        for r, got in enumerate(ranks):
            assert torch.allclose(got[f"{name}_loss"], loss.detach(), rtol=0, atol=1e-6), name
            # all_gather's backward sums the R identical losses' gradients: R x, which
            # DDP's mean over ranks divides away.
            want = x.grad[r * B : (r + 1) * B]
            assert torch.allclose(got[f"{name}_grad"] / WORLD, want, rtol=0, atol=1e-6), name
            assert want.abs().max() > 1e-4  # a gradient worth comparing

    torch.manual_seed(0)
    model = torch.nn.Linear(IN, D).double()
    total = sum(_losses(model(inputs.double()), seed=7).values())
    total.backward()
    for got in ranks:
        assert abs(got["ddp_loss"].item() - total.item()) < 1e-6
        assert torch.allclose(got["ddp_weight_grad"], model.weight.grad, rtol=0, atol=1e-6)
        assert torch.allclose(got["ddp_bias_grad"], model.bias.grad, rtol=0, atol=1e-6)
    # The local statistic really differs: gathering matters.
    local = batch_variance_loss(feats[:B])
    assert abs(local.item() - batch_variance_loss(feats).item()) > 1e-3


def test_gather_is_identity_without_a_process_group() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_batch(x) is x
