"""Pure loss functions of the JEPA objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize_targets(h: Tensor) -> Tensor:
    """Layer-norm target features over the last dim, no affine, eps 1e-5.

    eps is torch's default (1e-5), not the model LayerNorms' 1e-6: that is what the reference
    trains with, and it moves the official loss by ~4e-6 if changed.
    """
    return F.layer_norm(h, (h.shape[-1],))


def jepa_loss(preds: list[Tensor], targets: list[Tensor], exp: float = 1.0) -> Tensor:
    """Mean over mask pairs of mean(|p - t|^exp) / exp (exp=1: L1, exp=2: half MSE)."""
    if len(preds) != len(targets) or not preds:
        raise ValueError(
            f"need equal, non-zero numbers of predictions ({len(preds)}) and targets ({len(targets)})"
        )
    total = 0.0
    for p, t in zip(preds, targets):
        err = (p - t).abs()  # [B, K, D]
        if exp != 1.0:
            err = err**exp
        total = total + err.mean() / exp
    return total / len(preds)


def variance_loss(x: Tensor, eps: float = 1e-4) -> Tensor:
    """VICReg variance hinge: mean(relu(1 - std)) of each feature over the tokens of a sample.

    ``x`` [B, K, D]; the std is taken over K (dim 1), as V-JEPA's regulariser does.
    """
    std = torch.sqrt(x.var(dim=1) + eps)  # [B, D]
    return F.relu(1.0 - std).mean()


def covariance_loss(x: Tensor) -> Tensor:
    """VICReg covariance: sum of squared off-diagonal feature covariances / D, per sample mean.

    ``x`` [B, K, D], covariance over the K tokens of each sample.
    """
    B, K, D = x.shape
    xc = x - x.mean(dim=1, keepdim=True)  # [B, K, D]
    cov = xc.transpose(1, 2) @ xc / max(K - 1, 1)  # [B, D, D]
    off = cov.pow(2).sum(dim=(1, 2)) - cov.diagonal(dim1=1, dim2=2).pow(2).sum(dim=1)  # [B]
    return (off / D).mean()
