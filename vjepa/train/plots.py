"""Run plots: ``loss.png`` and ``health.png`` (from metrics.jsonl) and ``masks.png`` (context /
target overlay).

Matplotlib with the Agg backend (no display needed); the figure objects are closed after
saving so long runs do not leak them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vjepa.train.metrics import read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: set before pyplot is imported
    import matplotlib.pyplot as plt

    return plt


def plot_loss(metrics_path: str | Path, out_path: str | Path) -> Path | None:
    """Loss (left axis, log scale) and learning rate (right axis) against the step.

    Rows replayed after a resume (a step seen before) are dropped so the curve is the run's.
    Returns ``out_path``, or None when there is no loss row yet.
    """
    by_step: dict[int, dict] = {}
    for row in read_metrics(metrics_path):
        if "loss" in row and "step" in row:
            by_step[int(row["step"])] = row  # a later (resumed) row wins
    if not by_step:
        return None
    steps = sorted(by_step)
    loss = [by_step[s]["loss"] for s in steps]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, color="tab:blue", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (L1 to target features)")
    if all(v > 0 for v in loss):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if all("lr" in by_step[s] for s in steps):
        ax2 = ax.twinx()
        ax2.plot(steps, [by_step[s]["lr"] for s in steps], color="tab:orange", alpha=0.6)
        ax2.set_ylabel("learning rate", color="tab:orange")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)


# (metric in metrics.jsonl after the encoder's prefix, panel title): the collapse watch that
# vjepa.train.metrics.health_metrics logs, per encoder (``context_rankme``, ``target_rankme``)
HEALTH_PANELS = (
    ("clip_std", "across-clip std at fixed positions"),
    ("position_share", "variance share of position alone"),
    ("rankme", "RankMe of centred pooled features"),
    ("std", "feature std (batch and positions pooled)"),
)
HEALTH_ENCODERS = (("context", "tab:blue"), ("target", "tab:orange"))
FLAT_RTOL = 1e-6  # a series whose spread is below this share of its size did not move


def is_flat(values: Sequence[float], rtol: float = FLAT_RTOL) -> bool:
    """True when ``values`` (two or more) do not change: a frozen encoder on fixed input."""
    if len(values) < 2:
        return False
    lo, hi = min(values), max(values)
    return hi - lo <= rtol * max(abs(hi), abs(lo), 1e-12)


PROBE_LINES = (("online_knn_top1", "kNN"), ("online_linear_top1", "linear"))
"""The online probe's metrics (vjepa.train.online_probe) and their labels in health.png."""


def _plot_probe(ax, rows: dict[int, dict]) -> None:
    """The online probe's top-1 against the step, one line per probe."""
    for key, label in PROBE_LINES:
        points = [(s, rows[s][key]) for s in sorted(rows) if rows[s].get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker=".", label=label)
    ax.set_title("online probe top-1 (%)", fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_health(metrics_path: str | Path, out_path: str | Path) -> Path | None:
    """One panel per health metric (see ``HEALTH_PANELS``) against the step, one line per
    encoder logged (``context``: the one that trains; ``target``: only when it moves), and one
    for the online probe's top-1 when it ran (``PROBE_LINES``).

    A collapse across clips shows as across-clip std falling towards 0 and position share
    rising towards 1 while the pooled feature std stays up. Flat-line check: a series that
    never changes is drawn dashed and labelled ``flat``, so a frozen encoder's numbers are not
    read as a trend. Rows replayed after a resume are dropped; returns ``out_path``, or None
    when no row has a health metric yet.
    """
    keys = [f"{enc}_{m}" for enc, _ in HEALTH_ENCODERS for m, _ in HEALTH_PANELS]
    by_step: dict[int, dict] = {}
    probe: dict[int, dict] = {}  # the online probe's rows (vjepa.train.online_probe)
    for row in read_metrics(metrics_path):
        if "step" in row and any(key in row for key in keys):
            by_step[int(row["step"])] = row  # a later (resumed) row wins
        if "step" in row and any(key in row for key, _ in PROBE_LINES):
            probe[int(row["step"])] = row
    if not by_step and not probe:
        return None
    steps = sorted(by_step)
    plt = _pyplot()
    panels = len(HEALTH_PANELS) + bool(probe)
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 3.4), squeeze=False)
    axes = list(axes[0])
    if probe:
        _plot_probe(axes.pop(), probe)
    for ax, (metric, title) in zip(axes, HEALTH_PANELS):
        for enc, color in HEALTH_ENCODERS:
            key = f"{enc}_{metric}"
            points = [(s, by_step[s][key]) for s in steps if by_step[s].get(key) is not None]
            if not points:
                continue
            flat = is_flat([v for _, v in points])
            label = f"{enc} (flat: did not change)" if flat else enc
            ax.plot(*zip(*points), marker=".", color=color, ls="--" if flat else "-", label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if metric == "position_share":
            ax.set_ylim(0, 1)
        if ax.get_lines():
            ax.legend(fontsize=7)
    logged = [enc for enc, _ in HEALTH_ENCODERS if steps and f"{enc}_std" in by_step[steps[-1]]]
    note = "" if "target" in logged else "; target encoder frozen (not plotted)"
    title = f"representation health of the {' and '.join(logged)} encoder{note}"
    fig.suptitle(title if logged else "online probe (no health row yet)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)


def token_mask(idx: torch.Tensor, grid: tuple[int, int, int]) -> np.ndarray:
    """Boolean ``[t, h, w]`` token grid that is True at the flat token indices ``idx``.

    Flat index order is (time, row, column), the order of the patch embedding's tokens.
    """
    mask = np.zeros(int(np.prod(grid)), dtype=bool)
    mask[idx.detach().cpu().numpy().astype(np.int64)] = True
    return mask.reshape(grid)


def _overlay(img: np.ndarray, ctx: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Context tokens as they are, target tokens tinted red, tokens in neither darkened."""
    red = np.array([1.0, 0.1, 0.1])
    out = np.where(tgt[..., None], 0.5 * img + 0.5 * red, img)
    return np.where((ctx | tgt)[..., None], out, 0.25 * img)


def plot_masks(
    frames: np.ndarray,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    grid: tuple[int, int, int],
    out_path: str | Path,
) -> Path:
    """The clip (top row: the first frame of every tubelet) and one row per mask generator:
    context tokens shown as they are, target tokens tinted red, tokens in neither darkened.

    ``frames``: uint8 ``[T, H, W, 3]`` of one clip; ``pairs``: ``(ctx_idx [Kc], tgt_idx [Kt])``
    per generator for that clip; ``grid``: tokens ``(t, h, w)``.
    """
    t_tok, h_tok, w_tok = grid
    num_frames, height, width, _ = frames.shape
    tubelet = num_frames // t_tok
    cell = np.ones((height // h_tok, width // w_tok), dtype=bool)  # one token in pixels
    plt = _pyplot()
    rows = len(pairs) + 1
    fig, axes = plt.subplots(rows, t_tok, figsize=(1.6 * t_tok, 1.7 * rows), squeeze=False)
    for t in range(t_tok):
        img = frames[t * tubelet].astype(np.float32) / 255.0  # [H, W, 3]
        axes[0][t].imshow(img)
        axes[0][t].set_title(f"frame {t * tubelet}", fontsize=8)
        for r, (ctx_idx, tgt_idx) in enumerate(pairs, start=1):
            ctx = np.kron(token_mask(ctx_idx, grid)[t], cell) > 0  # [H, W]
            tgt = np.kron(token_mask(tgt_idx, grid)[t], cell) > 0  # [H, W]
            axes[r][t].imshow(_overlay(img, ctx, tgt).clip(0, 1))
    axes[0][0].set_ylabel("clip", fontsize=7)
    for r, (ctx_idx, tgt_idx) in enumerate(pairs, start=1):
        axes[r][0].set_ylabel(f"mask {r - 1}\nctx {len(ctx_idx)} / tgt {len(tgt_idx)}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("context (clear), target (red), unused (dark)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)
