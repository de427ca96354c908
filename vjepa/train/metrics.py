"""Meters and the metrics log (training loop), and representation health (models).

Two parts, owned by two people; keep edits to your own section:

- meters / logging (train): :class:`WindowMeter`, :class:`Throughput`, :class:`MetricsLog`,
  :func:`read_metrics`;
- representation health (model): ``feature_std``, ``effective_rank``, and the collapse
  watch across clips: ``across_clip_std``, ``position_share``, ``rankme``, ``health_metrics``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# ----------------------------------------------------------------------------------------
# Meters and metrics.jsonl (training loop)
# ----------------------------------------------------------------------------------------


class WindowMeter:
    """Mean of the values added since the last :meth:`reset` (one logging window)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.total += float(value) * n
        self.count += n

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0


class Throughput:
    """Clips per second and the fraction of wall time spent waiting for data, per window.

    The loop calls :meth:`data_ready` when a batch arrives (the time since the previous
    :meth:`step_done` was data wait) and :meth:`step_done` after the optimizer step.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        now = time.perf_counter()
        self._window_start = now
        self._last = now
        self.wait = 0.0
        self.clips = 0

    def data_ready(self) -> None:
        now = time.perf_counter()
        self.wait += now - self._last
        self._last = now

    def step_done(self, clips: int) -> None:
        self.clips += clips
        self._last = time.perf_counter()

    def summary(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        return {
            "clips_per_s": self.clips / elapsed,
            "data_wait_frac": min(self.wait / elapsed, 1.0),
        }


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per line, flushed as it is written.

    Append (not truncate) so a resumed run continues the same file; rows carry ``step`` so a
    reader can tell the resume point (a row with ``event: resume``) and drop replays.
    """

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return str(value)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a ``metrics.jsonl`` (a torn last line from a kill is skipped)."""
    rows = []
    path = Path(path)
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # only a line cut by a kill mid-write can be torn; later lines are whole
    return rows


# ----------------------------------------------------------------------------------------
# Representation health (model engineer): feature_std, effective_rank
# ----------------------------------------------------------------------------------------


@torch.no_grad()
def feature_std(x: torch.Tensor) -> float:
    """Mean over feature dims of the std across all other positions; ``x`` [..., D].

    Collapse drives this to 0 (every token the same vector).
    """
    flat = x.detach().reshape(-1, x.shape[-1]).float()  # [M, D]
    return float(flat.std(dim=0).mean())


@torch.no_grad()
def effective_rank(pooled: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe: exp(entropy) of the L1-normalised singular values of ``pooled`` [N, D].

    Ranges from 1 (collapsed to a line) to min(N, D) (isotropic); Garrido et al. 2023.
    """
    s = torch.linalg.svdvals(pooled.detach().float())  # [min(N, D)]
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


# ----------------------------------------------------------------------------------------
# Collapse across clips (issue 11): statistics over the batch at fixed token positions
# ----------------------------------------------------------------------------------------
#
# ``feature_std`` pools batch and positions together, so features that depend only on the
# token position (every clip mapped to the same token map) still look healthy. These look
# at the batch axis separately.


@torch.no_grad()
def across_clip_std(x: torch.Tensor) -> float:
    """Std over clips at each fixed token position, averaged over positions and dims.

    ``x`` [B, N, D]. 0 when every clip gets the same token map (collapse across clips), even
    if the tokens within a clip differ. NaN for B < 2 (no spread to measure).
    """
    x = x.detach().float()
    if x.shape[0] < 2:
        return math.nan
    return float(x.std(dim=0).mean())  # std over B: [N, D] -> scalar


@torch.no_grad()
def position_share(x: torch.Tensor, eps: float = 1e-12) -> float:
    """Share of the feature variance explained by the token position alone, in [0, 1].

    ``x`` [B, N, D]: variance of the per-position means (over clips) divided by the total
    variance over clips and positions, summed over dims. 1 = the features are a function of
    the position (the clip does not matter); about 1/B for features independent of position.
    """
    x = x.detach().float()
    grand = x.mean(dim=(0, 1), keepdim=True)  # [1, 1, D]
    per_pos = x.mean(dim=0, keepdim=True)  # [1, N, D]
    total = (x - grand).pow(2).mean()  # over B, N, D
    between = (per_pos - grand).pow(2).mean()  # over N, D (each position weighs B clips)
    return float(between / (total + eps))


@torch.no_grad()
def rankme(pooled: torch.Tensor) -> float:
    """RankMe (Garrido et al. 2023) of the *centred* pooled features ``pooled`` [B, D].

    Centring removes the shared mean vector, which alone would count as one direction and
    hide a batch that collapsed to a point plus noise along few directions. Scale-free: an
    isotropic speck of noise scores high, so read it beside :func:`across_clip_std`.
    """
    pooled = pooled.detach().float()
    return effective_rank(pooled - pooled.mean(dim=0, keepdim=True))


@torch.no_grad()
def health_metrics(features: torch.Tensor) -> dict[str, float]:
    """The collapse watch the trainer logs every ``train.health_every`` steps.

    ``features`` [B, N, D] (token features, e.g. the layer-normed targets) or [B, D] (pooled).
    Keys: ``std`` (:func:`feature_std`, pooled over batch and positions), ``rank`` (RankMe of
    the raw pooled features, as logged before), ``clip_std`` (:func:`across_clip_std`),
    ``position_share`` (:func:`position_share`), ``rankme`` (:func:`rankme`, centred).
    Token-level keys are left out for pooled input.
    """
    features = features.detach().float()
    pooled = features.mean(dim=1) if features.dim() == 3 else features  # [B, D]
    out = {
        "std": feature_std(features),
        "rank": effective_rank(pooled),
        "rankme": rankme(pooled),
    }
    if features.dim() == 3:
        out["clip_std"] = across_clip_std(features)
        out["position_share"] = position_share(features)
    return out


# ----------------------------------------------------------------------------------------
# The slow-feature trap (issue 27): features that differ between clips but not over time
# ----------------------------------------------------------------------------------------
#
# A JEPA on a static background with a small moving object can satisfy its loss with features
# of the background alone (Sobal et al. 2022): they differ between clips (so no collapse is
# seen) and stay constant over time. These take token features on their grid, [B, T, S, D]
# (clips, time steps, spatial tokens, dims).


@torch.no_grad()
def within_across_std(x: torch.Tensor) -> dict[str, float]:
    """Within-clip (over time) vs across-clip feature std of tokens ``x`` [B, T, S, D].

    ``within_clip_std``: std over T at each (clip, spatial token, dim), averaged;
    ``across_clip_std``: std over B at each (time step, spatial token, dim), averaged;
    ``within_across_ratio``: their ratio. A slow-feature solution has a ratio near 0 (features
    fixed within a clip, different between clips); features that follow the motion raise it.
    NaN where an axis has fewer than 2 entries.
    """
    x = x.detach().float()
    if x.dim() != 4:
        raise ValueError(f"expected tokens [B, T, S, D], got shape {tuple(x.shape)}")
    within = float(x.std(dim=1).mean()) if x.shape[1] > 1 else math.nan
    across = float(x.std(dim=0).mean()) if x.shape[0] > 1 else math.nan
    return {
        "within_clip_std": within,
        "across_clip_std": across,
        "within_across_ratio": within / across if across > 0 else math.nan,
    }


@torch.no_grad()
def moving_loss_share(
    token_loss: torch.Tensor, target_change: torch.Tensor, threshold: float = 0.5
) -> dict[str, float]:
    """Share of the loss on target tokens whose target changes over time.

    ``token_loss`` [B, K] (the loss of each target token, e.g. mean |p - t| over dims) and
    ``target_change`` [B, K] (how much that token's target differs from the same spatial
    position's target at the first time step, e.g. the RMS over dims of the difference of the
    layer-normed targets). A token is *moving* when its change exceeds ``threshold`` (layer-normed
    features have RMS 1, so 0.5 is a large change). Keys: ``moving_token_frac`` (share of target
    tokens that move) and ``moving_loss_share`` (share of the summed loss they carry). When the
    share stays at the fraction, the loss treats moving and static tokens alike; a loss that
    copies the static background well and misses the object has a share far above it.
    """
    moving = (target_change > threshold).float()  # [B, K]
    total = token_loss.float().sum()
    return {
        "moving_token_frac": float(moving.mean()),
        "moving_loss_share": float((token_loss.float() * moving).sum() / total)
        if total > 0
        else math.nan,
    }


# ----------------------------------------------------------------------------------------
# The object-position probe (issue 27): a frozen per-time-step ridge regression
# ----------------------------------------------------------------------------------------


def torus_targets(xy: torch.Tensor, size: float) -> torch.Tensor:
    """Positions on a torus ``xy`` [M, 2] (pixels in [0, size)) -> [M, 4] (cos, sin of x, y).

    The objects scene wraps (an object leaving one edge re-enters at the other), so a raw x of
    63 and of 0 are neighbours; their angles are too.
    """
    ang = xy.double() * (2 * math.pi / size)  # [M, 2]
    return torch.cat([ang.cos(), ang.sin()], dim=1)  # [M, 4]: cos x, cos y, sin x, sin y


def torus_positions(pred: torch.Tensor, size: float) -> torch.Tensor:
    """Inverse of :func:`torus_targets`: [M, 4] (cos x, cos y, sin x, sin y) -> [M, 2] pixels."""
    ang = torch.atan2(pred[:, 2:], pred[:, :2])  # [M, 2] in (-pi, pi]
    return (ang * (size / (2 * math.pi))) % size


def torus_error(pred_xy: torch.Tensor, true_xy: torch.Tensor, size: float) -> torch.Tensor:
    """Wrap-aware Euclidean pixel distance [M] between positions [M, 2] on a ``size`` torus."""
    d = (pred_xy.double() - true_xy.double() + size / 2) % size - size / 2  # [M, 2]
    return d.norm(dim=1)


def ridge_fit(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, ...]:
    """Ridge regression ``y ~ x`` on standardised features; returns (mean, std, W, bias).

    ``x`` [M, F], ``y`` [M, O]; ``lam`` is the L2 penalty relative to the number of samples.
    Solved in the dual when F > M (cheaper for the flattened token features).
    """
    x, y = x.double(), y.double()
    mu, sd = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    xs = (x - mu) / sd  # [M, F]
    ym = y.mean(dim=0)
    m, f = xs.shape
    if f > m:
        k = xs @ xs.T + lam * m * torch.eye(m, dtype=xs.dtype)  # [M, M]
        w = xs.T @ torch.linalg.solve(k, y - ym)  # [F, O]
    else:
        k = xs.T @ xs + lam * m * torch.eye(f, dtype=xs.dtype)  # [F, F]
        w = torch.linalg.solve(k, xs.T @ (y - ym))
    return mu, sd, w, ym


def ridge_predict(model: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
    """Predictions [M, O] of a :func:`ridge_fit` model on features ``x`` [M, F]."""
    mu, sd, w, ym = model
    return ((x.double() - mu) / sd) @ w + ym


def ridge_chosen(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    lams: tuple[float, ...],
    loss: Callable[[torch.Tensor, torch.Tensor], float],
    truth: torch.Tensor | None = None,
) -> tuple[tuple[torch.Tensor, ...], float]:
    """(ridge model, its penalty) of ``train_y ~ train_x``: each penalty of ``lams`` is fitted on
    the first four fifths of the train rows and scored by ``loss(predictions, truth)`` on the
    last fifth (``truth``: ``train_y`` unless given; never val), and the first lowest is refit
    on all the rows."""
    truth = train_y if truth is None else truth
    cut = max(1, int(0.8 * len(train_x)))
    losses = [
        loss(
            ridge_predict(ridge_fit(train_x[:cut], train_y[:cut], lam), train_x[cut:]), truth[cut:]
        )
        for lam in lams
    ]
    lam = lams[losses.index(min(losses))]
    return ridge_fit(train_x, train_y, lam), lam


def position_probe_error(
    train_x: torch.Tensor,
    train_xy: torch.Tensor,
    val_x: torch.Tensor,
    val_xy: torch.Tensor,
    size: float,
    lams: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0),
) -> dict[str, float]:
    """Frozen position probe: ridge from features to the (cos, sin) of the object's centre.

    ``*_x`` [M, F] features of one time step of a clip (e.g. its spatial tokens flattened),
    ``*_xy`` [M, 2] the object's centre in pixels on the ``size`` torus. The penalty is chosen
    on the last fifth of the train rows (never on val), then refit on all of them. Returns the
    mean wrap-aware pixel error on val (``position_error``), its median, and the error of always
    answering the train set's circular mean (``position_error_const``: what a probe that sees
    nothing reaches; a uniform random guess on a 64 torus averages ~24.5 px).
    """
    tgt = torus_targets(train_xy, size)

    def mean_error(pred: torch.Tensor, xy: torch.Tensor) -> float:
        return float(torus_error(torus_positions(pred, size), xy, size).mean())

    model, lam = ridge_chosen(train_x, tgt, lams, mean_error, truth=train_xy)
    err = torus_error(torus_positions(ridge_predict(model, val_x), size), val_xy, size)
    const = torus_positions(tgt.mean(dim=0, keepdim=True), size).expand(len(val_xy), 2)
    return {
        "position_error": float(err.mean()),
        "position_error_median": float(err.median()),
        "position_error_const": float(torus_error(const, val_xy, size).mean()),
        "position_lam": lam,
    }
