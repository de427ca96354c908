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
