"""Meters and the metrics log (training loop), and representation health (models).

Two parts, owned by two people; keep edits to your own section:

- meters / logging (train): :class:`WindowMeter`, :class:`Throughput`, :class:`MetricsLog`,
  :func:`read_metrics`;
- representation health (model): ``feature_std``, ``effective_rank``.
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
