"""The probe's outputs: metrics, ``report.json``, ``confusion.png`` and a one-screen table.

Top-1 carries its 95 % Wilson interval (``top1_ci95``); ``report.json`` keeps each val clip's
prediction (``predictions``) so :func:`compare_reports` can test two encoders on the same
clips with a paired (McNemar) test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vjepa.stats import mcnemar_exact, two_proportion_p, wilson_percent

ALPHA = 0.05
"""Significance level of :func:`compare_reports` (two-sided)."""


def classification_metrics(
    probs: torch.Tensor, labels: torch.Tensor, label_names: list[str]
) -> dict[str, Any]:
    """Top-1 / top-5 accuracy (percent), per-class accuracy (percent) and the confusion matrix.

    ``probs`` [N, C] are (view-averaged) class probabilities, ``labels`` [N] the true classes.
    Classes without validation samples get per-class accuracy ``None``.
    """
    num_classes = probs.shape[1]
    labels = labels.long()
    topk = probs.topk(min(5, num_classes), dim=1).indices  # [N, <=5]
    pred = topk[:, 0]  # [N]
    n = max(labels.numel(), 1)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)  # [true, pred]
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per_class = {}
    for c, name in enumerate(label_names):
        total = int(confusion[c].sum())
        per_class[name] = round(100.0 * int(confusion[c, c]) / total, 3) if total else None
    correct = int((pred == labels).sum().item())
    return {
        "top1": round(100.0 * correct / n, 3),
        "top1_ci95": wilson_percent(correct, labels.numel()),
        "num_correct": correct,
        "top5": round(100.0 * (topk == labels[:, None]).any(dim=1).sum().item() / n, 3),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def prediction_records(
    keys: Sequence[str], probs: torch.Tensor, labels: torch.Tensor
) -> dict[str, list]:
    """Per-clip predictions for report.json: ``{"keys", "labels", "pred"}`` (parallel lists).

    ``probs`` [N, C]; kept so two reports on the same val clips can be compared pairwise.
    """
    return {
        "keys": [str(k) for k in keys],
        "labels": [int(v) for v in labels.long().tolist()],
        "pred": [int(v) for v in probs.argmax(dim=1).tolist()],
    }


def _correct_by_key(report: dict[str, Any]) -> dict[str, bool] | None:
    pr = report.get("predictions")
    if not pr or not pr.get("keys"):
        return None
    return {k: p == y for k, y, p in zip(pr["keys"], pr["labels"], pr["pred"])}


def _counts(report: dict[str, Any]) -> tuple[int, int]:
    """(correct, n) of a report; older reports without ``num_correct`` use top1 * num_val."""
    n = int(report["num_val"])
    k = report.get("num_correct")
    return (int(k) if k is not None else round(report["top1"] * n / 100.0)), n


def compare_reports(a: dict[str, Any] | str | Path, b: dict[str, Any] | str | Path) -> dict:
    """Is report ``a``'s top-1 significantly different from ``b``'s (e.g. pretrained vs random)?

    ``a`` / ``b``: report dicts or report.json paths. When both carry per-clip predictions on
    the same val clips, the exact McNemar test on the discordant clips (paired: the stronger
    test, and the right one for two encoders on one val set); otherwise the pooled
    two-proportion z-test. ``significant`` is p < ``ALPHA``. ``intervals_overlap`` says
    whether the two 95 % Wilson intervals overlap (a stricter, cruder criterion).
    """
    a, b = (json.loads(Path(r).read_text()) if not isinstance(r, dict) else r for r in (a, b))
    ka, na = _counts(a)
    kb, nb = _counts(b)
    ci_a, ci_b = wilson_percent(ka, na), wilson_percent(kb, nb)
    out: dict[str, Any] = {
        "a_top1": round(100.0 * ka / max(na, 1), 3),
        "b_top1": round(100.0 * kb / max(nb, 1), 3),
        "a_ci95": ci_a,
        "b_ci95": ci_b,
        "gap": round(100.0 * (ka / max(na, 1) - kb / max(nb, 1)), 3),
        "intervals_overlap": not (ci_a[0] > ci_b[1] or ci_b[0] > ci_a[1]),
    }
    ca, cb = _correct_by_key(a), _correct_by_key(b)
    common = sorted(set(ca) & set(cb)) if ca is not None and cb is not None else []
    if common and len(common) == len(ca) == len(cb):
        only_a = sum(ca[k] and not cb[k] for k in common)
        only_b = sum(cb[k] and not ca[k] for k in common)
        out |= {
            "test": "mcnemar",
            "num_paired": len(common),
            "a_only_correct": only_a,
            "b_only_correct": only_b,
            "p_value": mcnemar_exact(only_a, only_b),
        }
    else:
        out |= {"test": "two-proportion", "p_value": two_proportion_p(ka, na, kb, nb)}
    out["significant"] = out["p_value"] < ALPHA
    return out


def format_comparison(cmp: dict[str, Any], names: tuple[str, str] = ("a", "b")) -> str:
    """One line per encoder with its interval, then the verdict on the gap."""
    a, b = names
    width = max(len(a), len(b))
    lines = [
        f"  {a:<{width}}  {cmp['a_top1']:6.2f} %  (95 % CI {cmp['a_ci95'][0]:.1f}-{cmp['a_ci95'][1]:.1f})",
        f"  {b:<{width}}  {cmp['b_top1']:6.2f} %  (95 % CI {cmp['b_ci95'][0]:.1f}-{cmp['b_ci95'][1]:.1f})",
    ]
    detail = (
        f"McNemar on {cmp['num_paired']} paired clips: {cmp['a_only_correct']} only {a} right, "
        f"{cmp['b_only_correct']} only {b} right"
        if cmp["test"] == "mcnemar"
        else "two-proportion z-test"
    )
    verdict = "significant" if cmp["significant"] else "NOT significant"
    lines.append(
        f"  gap {cmp['gap']:+.2f} points: {verdict} at 5 % (p = {cmp['p_value']:.3g}; {detail})"
    )
    return "\n".join(lines)


def save_confusion(confusion: list[list[int]], label_names: list[str], path: Path) -> Path:
    """Row-normalised confusion matrix as a PNG (matplotlib Agg; no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = torch.tensor(confusion, dtype=torch.float32)  # [C, C]
    rates = cm / cm.sum(dim=1, keepdim=True).clamp(min=1)  # [C, C]
    c = len(label_names)
    side = min(4 + 0.35 * c, 30)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    if c <= 60:  # tick labels are unreadable beyond this (e.g. Kinetics-400)
        ax.set_xticks(range(c), label_names, rotation=90)
        ax.set_yticks(range(c), label_names)
    if c <= 20:
        for i in range(c):
            for j in range(c):
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_table(report: dict[str, Any]) -> str:
    """A one-screen summary: backbone, views, sizes, top-1/top-5, the sweep and per-class."""
    bb = report["backbone"]
    ident = (
        bb["path"] if bb["path"] != "random" else f"random {bb.get('model')} (seed {bb['seed']})"
    )
    kind = report["kind"] if report["kind"] == "finetune" else f"probe {report['kind']}"
    lines = [
        f"{kind}  backbone {ident}",
        f"views {report['views']}  train {report['num_train']}  val {report['num_val']}",
        f"top-1 {report['top1']:6.2f}%   top-5 {report['top5']:6.2f}%",
    ]
    ci = report.get("top1_ci95")
    if ci is not None:
        lines[-1] += f"   top-1 95 % CI {ci[0]:.1f}-{ci[1]:.1f} (Wilson, n={report['num_val']})"
    sweep = report.get("sweep")
    if sweep and len(sweep["heads"]) > 1:
        lines.append(f"selected on validation: {sweep['selected_on_validation']}")
        for h in sweep["heads"]:
            mark = "*" if h["index"] == sweep["best"] else " "
            lines.append(
                f" {mark} lr {h['lr']:<9.3g} wd {h['weight_decay']:<9.3g} top-1 {h['top1']:6.2f}%"
            )
    rows = list(report["per_class"].items())
    if len(rows) <= 20:
        lines.append("per class:")
        for name, acc in rows:
            lines.append(f"  {name:<24} {'-' if acc is None else f'{acc:6.2f}%'}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], run_dir: Path) -> Path:
    """Write ``report.json`` and ``confusion.png`` into ``run_dir``; returns the JSON path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if "confusion" in report:
        save_confusion(report["confusion"], list(report["per_class"]), run_dir / "confusion.png")
    path = run_dir / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)  # atomic: a reader never sees half a report
    return path
