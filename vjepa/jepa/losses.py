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


# ----------------------------------------------------------------------------------------
# Across-clip regularisers: statistics over the BATCH at each token position, so that a
# collapse in which every clip gets the same features (but positions still differ) is seen.
# The per-sample terms above take statistics over the tokens of one clip and cannot see it.
# ----------------------------------------------------------------------------------------


def _clips_first(x: Tensor) -> Tensor:
    """``x`` [B, N, D] (tokens) or [B, D] (pooled) -> [N, B, D]: one set of B clips per slot."""
    if x.dim() == 2:
        return x[None]  # [1, B, D]
    return x.transpose(0, 1)  # [N, B, D]


def batch_variance_loss(x: Tensor, eps: float = 1e-4) -> Tensor:
    """VICReg variance hinge with the std taken across the clips of the batch.

    ``x`` [B, N, D] or [B, D]: for every token position and feature, std over B; then
    ``mean(relu(1 - std))``. 0 when every feature varies across clips with std >= 1,
    ~1 when all clips have the same features.
    """
    z = _clips_first(x)  # [N, B, D]
    std = torch.sqrt(z.var(dim=1) + eps)  # [N, D]
    return F.relu(1.0 - std).mean()


def batch_covariance_loss(x: Tensor) -> Tensor:
    """VICReg covariance across the clips of the batch: off-diagonal cov^2 summed, / D.

    ``x`` [B, N, D] or [B, D]; one D x D covariance over B per token position, mean over them.
    """
    z = _clips_first(x)  # [N, B, D]
    n, b, d = z.shape
    zc = z - z.mean(dim=1, keepdim=True)  # [N, B, D]
    cov = zc.transpose(1, 2) @ zc / max(b - 1, 1)  # [N, D, D]
    off = cov.pow(2).sum(dim=(1, 2)) - cov.diagonal(dim1=1, dim2=2).pow(2).sum(dim=1)  # [N]
    return (off / d).mean()


def epps_pulley(x: Tensor, t_max: float = 3.0, knots: int = 17) -> Tensor:
    """Epps-Pulley statistic of 1-D samples against N(0, 1), one per column.

    ``x`` [..., S, M] (S samples of M variables) -> [..., M]:
    ``S * integral_{-t_max}^{t_max} |ecf(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt``, with the
    empirical characteristic function ``ecf(t) = mean_s exp(i t x_s)``. The integrand is
    even in t, so it is integrated on [0, t_max] with the trapezoid rule and doubled
    (LeJEPA's form). ~0 for standard normal samples, large for collapsed ones.
    """
    t = torch.linspace(0.0, t_max, knots, device=x.device, dtype=x.dtype)  # [K]
    phi = torch.exp(-0.5 * t**2)  # [K] the N(0, 1) characteristic function
    dt = t_max / (knots - 1)
    trapezoid = torch.full_like(t, 2.0 * dt)  # x2: the mirrored half [-t_max, 0]
    trapezoid[0] = trapezoid[-1] = dt
    weights = trapezoid * phi  # [K] quadrature weight times the Gaussian window
    xt = x[..., None] * t  # [..., S, M, K]
    cos_mean = torch.cos(xt).mean(dim=-3)  # [..., M, K]
    sin_mean = torch.sin(xt).mean(dim=-3)  # [..., M, K]
    err = (cos_mean - phi).square() + sin_mean.square()  # [..., M, K]
    return (err @ weights) * x.shape[-2]  # [..., M]


def sigreg_loss(
    x: Tensor,
    generator: torch.Generator,
    *,
    num_slices: int = 256,
    t_max: float = 3.0,
    knots: int = 17,
) -> Tensor:
    """SIGReg (LeJEPA): push the across-clip distribution of the features toward N(0, I).

    ``x`` [B, N, D] or [B, D]. ``num_slices`` random unit directions (drawn from
    ``generator``, fresh each call) project the features; at each token position the B
    projected values of each direction are tested against N(0, 1) with
    :func:`epps_pulley`; the result is the mean over directions and positions. By
    Cramer-Wold, all 1-D projections being N(0, 1) means the features are N(0, I).
    """
    z = _clips_first(x)  # [N, B, D]
    d = z.shape[-1]
    a = torch.randn(d, num_slices, generator=generator).to(z)  # [D, M]
    a = a / a.norm(dim=0, keepdim=True)  # unit directions
    return epps_pulley(z @ a, t_max=t_max, knots=knots).mean()  # [N, B, M] -> [N, M] -> ()


# ----------------------------------------------------------------------------------------
# Levers against the slow-feature trap (issue 27): a static background that differs between
# clips satisfies the loss while a small moving object is ignored (Sobal et al. 2022).
# ----------------------------------------------------------------------------------------


def _on_grid(x: Tensor, steps: int) -> Tensor:
    """Tokens [B, N, D] in (t, h, w) order -> [B, T, S, D] (``steps`` = T time steps)."""
    b, n, d = x.shape
    if n % steps:
        raise ValueError(f"{n} tokens do not split into {steps} time steps")
    return x.view(b, steps, n // steps, d)


def temporal_targets(targets: Tensor, steps: int, mode: str, ref: int = 0) -> Tensor:
    """Targets [B, N, D] (tokens in (t, h, w) order, ``steps`` time steps) made relative in time.

    ``raw``: unchanged. ``delta``: minus the same spatial token's target at time step ``ref``
    (the last context time step of ``mask.kind: future``), so the predictor regresses the
    change since the context. ``centred``: minus the clip's temporal mean at that spatial token.
    ``change``: the absolute value of ``delta`` (where, and how much, each feature changed).
    Each way a static background contributes exactly 0 and only what moves is left to predict.
    """
    if mode == "raw":
        return targets
    if mode not in ("delta", "centred", "change"):
        raise ValueError(f"target mode must be raw, delta, centred or change, got {mode!r}")
    x = _on_grid(targets, steps)  # [B, T, S, D]
    ref = x[:, ref : ref + 1] if mode != "centred" else x.mean(dim=1, keepdim=True)  # [B, 1, S, D]
    out = x - ref
    if mode == "change":  # |delta|: never negative, so where things move has a mean > 0
        out = out.abs()
    return out.reshape(targets.shape)


def time_variance_loss(x: Tensor, steps: int, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Within-clip variance hinge (PLDM's ``std_loss_t``): ``mean(relu(gamma - std_t))``.

    ``x`` [B, N, D] tokens of whole clips in (t, h, w) order; the std is over the ``steps``
    time steps at each (clip, spatial token, feature). Features that are constant within a
    clip (slow features: the static background) cost ``gamma``; features that follow what moves
    cost less, 0 once their std over time reaches ``gamma``.

    The batch mean at each (time step, spatial token) is removed first: a ViT can tell time
    steps apart without any motion (RoPE's offsets differ at the clip's first and last step),
    and a "time code" shared by every clip would otherwise satisfy the hinge for free. Only
    variation over time that differs between clips counts.
    """
    z = _on_grid(x, steps)  # [B, T, S, D]
    if z.shape[0] > 1:
        z = z - z.mean(dim=0, keepdim=True)  # drop the time code every clip shares
    std = torch.sqrt(z.var(dim=1) + eps)  # [B, S, D]
    return F.relu(gamma - std).mean()


def token_losses(pred: Tensor, target: Tensor, exp: float = 1.0) -> Tensor:
    """Per-token loss [B, K] of :func:`jepa_loss`'s form: mean over dims of |p - t|^exp / exp."""
    err = (pred - target).abs()  # [B, K, D]
    if exp != 1.0:
        err = err**exp
    return err.mean(dim=-1) / exp


def change_weights(normed: Tensor, steps: int, ref: int, strength: float) -> Tensor:
    """Per-token loss weights [B, N] that favour the tokens whose target changes over time.

    ``normed`` [B, N, D] layer-normed teacher features in (t, h, w) order. A token's change is
    the RMS over dims of its difference from the same spatial token at time step ``ref``; its
    weight is ``1 + strength * change``, rescaled to mean 1 over each clip's tokens (the loss
    keeps its scale). A clip where nothing moves gets weight 1 everywhere; in a clip with a small
    moving object the object's tokens carry far more of the loss than their count.
    """
    change = temporal_targets(normed, steps, "delta", ref).pow(2).mean(dim=-1).sqrt()  # [B, N]
    w = 1.0 + strength * change
    return w / w.mean(dim=1, keepdim=True)
