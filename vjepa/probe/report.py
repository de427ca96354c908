"""The probe's outputs: metrics, ``report.json``, ``confusion.png`` and a one-screen table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


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
    return {
        "top1": round(100.0 * (pred == labels).sum().item() / n, 3),
        "top5": round(100.0 * (topk == labels[:, None]).any(dim=1).sum().item() / n, 3),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


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
    lines = [
        f"probe {report['kind']}  backbone {ident}",
        f"views {report['views']}  train {report['num_train']}  val {report['num_val']}",
        f"top-1 {report['top1']:6.2f}%   top-5 {report['top5']:6.2f}%",
    ]
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
