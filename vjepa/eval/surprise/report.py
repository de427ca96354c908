"""The surprise report: pairwise accuracy overall and by category, the plot, the comparison."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vjepa.eval.surprise.pairs import Pair
from vjepa.stats import binomial_p, mcnemar_exact, wilson_percent


def _accuracy(right: list[float]) -> dict[str, Any]:
    n = len(right)
    k = sum(right)
    return {
        "pairwise_accuracy": round(100.0 * k / n, 3) if n else math.nan,
        "ci95": wilson_percent(k, n),
        "num_pairs": n,
    }


def _right(possible: float, impossible: float) -> float:
    """1 when the impossible video is the more surprising, 0.5 on a tie, else 0."""
    return 1.0 if impossible > possible else 0.5 if impossible == possible else 0.0


def score_pairs(pairs: list[Pair], results: dict[Path, dict], score: str) -> dict[str, Any]:
    """Pairwise accuracy overall and by category, for the max and the mean score."""
    out: dict[str, Any] = {}
    per_pair = []
    for pair in pairs:
        a, b = results[pair.possible], results[pair.impossible]
        per_pair.append(
            {
                "line": pair.line,
                "category": pair.category,
                "possible": str(pair.possible),
                "impossible": str(pair.impossible),
                "possible_max": a["max"],
                "impossible_max": b["max"],
                "possible_mean": a["mean"],
                "impossible_mean": b["mean"],
                "right_max": _right(a["max"], b["max"]),
                "right_mean": _right(a["mean"], b["mean"]),
            }
        )
    main = f"right_{score}"
    overall = _accuracy([p[main] for p in per_pair])
    out |= overall
    right = sum(p[main] for p in per_pair)
    # against chance (50 %): ties are split, so round to whole pairs for the exact test
    out["p_value_vs_chance"] = binomial_p(int(round(right)), len(per_pair))
    for other in ("max", "mean"):
        acc = _accuracy([p[f"right_{other}"] for p in per_pair])
        out[f"pairwise_accuracy_{other}"] = acc["pairwise_accuracy"]
        out[f"ci95_{other}"] = acc["ci95"]
    out["ties"] = sum(p[main] == 0.5 for p in per_pair)
    cats = sorted({p["category"] for p in per_pair})
    out["by_category"] = {
        c: {
            **_accuracy([p[main] for p in per_pair if p["category"] == c]),
            "pairwise_accuracy_mean": _accuracy(
                [p["right_mean"] for p in per_pair if p["category"] == c]
            )["pairwise_accuracy"],
            "pairwise_accuracy_max": _accuracy(
                [p["right_max"] for p in per_pair if p["category"] == c]
            )["pairwise_accuracy"],
        }
        for c in cats
    }
    out["pairs"] = per_pair
    return out


def plot_surprise(
    pairs: list[Pair], results: dict[Path, dict], out_path: Path, num: int = 4
) -> Path:
    """Surprise over time (one panel per pair) for ``num`` pairs, categories taken in turn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cat: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_cat.setdefault(pair.category, []).append(pair)
    chosen: list[Pair] = []  # round robin over the categories, so each one is shown
    for i in range(max(len(v) for v in by_cat.values())):
        chosen += [v[i] for v in by_cat.values() if i < len(v)]
    chosen = chosen[: max(1, num)]
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, pair in zip(axes.flat, chosen):
        for video, label, style in (
            (pair.possible, "possible", "-"),
            (pair.impossible, "impossible", "--"),
        ):
            r = results[video]
            ax.plot(r["frames"], r["surprise"], style, marker=".", label=label)
        ax.set_title(f"{pair.category} (line {pair.line})", fontsize=9)
        ax.set_xlabel("first predicted frame", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("surprise (L1)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def format_report(report: dict[str, Any]) -> str:
    """A few lines for stdout: overall and per-category accuracy with intervals."""
    lo, hi = report["ci95"]
    lines = [
        f"surprise  model {report['model']}  pairs {report['num_pairs']}  score {report['score']}",
        f"pairwise accuracy {report['pairwise_accuracy']:6.2f} %  (95 % CI {lo:.1f}-{hi:.1f}; "
        f"max {report['pairwise_accuracy_max']:.1f} %, mean {report['pairwise_accuracy_mean']:.1f}"
        f" %; p vs chance {report['p_value_vs_chance']:.3g})",
    ]
    lines += [
        f"  {cat:<12} {r['pairwise_accuracy']:6.2f} %  (95 % CI {r['ci95'][0]:.1f}-"
        f"{r['ci95'][1]:.1f}, n={r['num_pairs']}; max {r['pairwise_accuracy_max']:.1f} %, "
        f"mean {r['pairwise_accuracy_mean']:.1f} %)"
        for cat, r in report["by_category"].items()
    ]
    return "\n".join(lines)


def compare_surprise(a: dict[str, Any] | str | Path, b: dict[str, Any] | str | Path) -> dict:
    """Pairwise accuracy of surprise report ``a`` vs ``b`` on the same pairs (e.g. pretrained
    vs random): exact McNemar test on the pairs exactly one of them gets right (ties, counted
    half in the accuracy, are left out of the test). Reports or report.json paths."""
    a, b = (json.loads(Path(r).read_text()) if not isinstance(r, dict) else r for r in (a, b))
    key = f"right_{a['score']}"
    ra = {(p["possible"], p["impossible"]): p[key] for p in a["pairs"]}
    rb = {(p["possible"], p["impossible"]): p[key] for p in b["pairs"]}
    if set(ra) != set(rb):
        raise ValueError("the two surprise reports were run on different pairs")
    only_a = sum(ra[k] == 1.0 and rb[k] == 0.0 for k in ra)
    only_b = sum(rb[k] == 1.0 and ra[k] == 0.0 for k in ra)
    p = mcnemar_exact(only_a, only_b)
    return {
        "a_accuracy": a["pairwise_accuracy"],
        "b_accuracy": b["pairwise_accuracy"],
        "a_ci95": a["ci95"],
        "b_ci95": b["ci95"],
        "gap": round(a["pairwise_accuracy"] - b["pairwise_accuracy"], 3),
        "num_pairs": len(ra),
        "a_only_right": only_a,
        "b_only_right": only_b,
        "p_value": p,
        "significant": p < 0.05,
    }


def plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
