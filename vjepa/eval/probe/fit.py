"""Fitting the probe heads on frozen features, and choosing one.

Every head of the (lr, wd) grid starts from the same seeded init and sees the same batches; the
optimizer and schedules are the training loop's own: AdamW with the shared no-decay rule
(vjepa.train.optim.param_groups) and ``lr_at`` (linear warmup from 0 counted from the first
step, then a half cosine to 0), set per step with ``set_schedules``. The head with the best
validation top-1 is selected (first on ties).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vjepa.config import Config
from vjepa.eval.probe.features import (
    extract_features,
    read_shard_manifest,
    train_view_loader,
    view_loader,
)
from vjepa.eval.probe.heads import AttentiveClassifier, LinearProbe, init_head, knn_predict
from vjepa.eval.probe.views import FeatureSet, head_inputs
from vjepa.train.optim import param_groups, set_schedules
from vjepa.train.schedules import lr_at


def average_view_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax each view's logits ``[N, S, C]`` and average over views -> ``[N, C]``."""
    return logits.float().softmax(dim=-1).mean(dim=1)


def build_head(
    kind: str, dim: int, num_classes: int, cfg: Config, generator: torch.Generator
) -> nn.Module:
    """A freshly initialised head (every head of a sweep gets the same init from ``generator``)."""
    p = cfg.probe
    if kind == "attentive":
        head: nn.Module = AttentiveClassifier(
            dim, num_classes, num_heads=p.heads, depth=p.depth, num_queries=p.num_queries
        )
    else:
        head = LinearProbe(dim, num_classes)
    return init_head(head, generator)


def fit_on_features(
    heads: list[nn.Module],
    grid: list[tuple[float, float]],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    warmup_epochs: int,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
) -> list[float]:
    """Train every head (with its own ``(lr, wd)``) on the same shuffled batches of cached inputs.

    ``inputs`` [N, S, ...] are flattened so each prediction view is a training sample with its
    video's label. Returns each head's mean training loss over the last epoch.
    """
    x = inputs.flatten(0, 1)  # [N*S, ...]
    y = labels.repeat_interleave(inputs.shape[1])  # [N*S]

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]  # [b, ...], [b]

    steps = math.ceil(x.shape[0] / batch_size)
    return fit_heads(heads, grid, epoch_batches, epochs=epochs, steps_per_epoch=steps,
                     warmup_epochs=warmup_epochs, device=device)  # fmt: skip


def fit_heads(
    heads: list[nn.Module],
    grid: list[tuple[float, float]],
    epoch_batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int,
    device: str | torch.device = "cpu",
) -> list[float]:
    """The head-training loop over any batch source (cached features or a streaming encoder).

    Every head sees the same batches; lr follows warmup + cosine per step. Returns each head's
    mean training loss over the last epoch.
    """
    total, warmup = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch
    opts = [_adamw(h.to(device).train(), lr, wd) for h, (lr, wd) in zip(heads, grid)]
    last = [0.0] * len(heads)
    step = 0
    for epoch in range(epochs):
        sums, seen = [0.0] * len(heads), 0
        for xb, yb in epoch_batches(epoch):
            xb, yb = xb.to(device), yb.to(device)  # [b, ...], [b]
            for i, (head, opt, (lr, wd)) in enumerate(zip(heads, opts, grid)):
                step_lr = lr_at(step, warmup_steps=warmup, start_lr=0.0, lr=lr, final_lr=0.0,
                                total_steps=total, warmup_inclusive=True)  # fmt: skip
                set_schedules(opt, step_lr, wd)
                loss = F.cross_entropy(head(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums[i] += loss.item()
            step, seen = step + 1, seen + 1
        last = [s / max(seen, 1) for s in sums]
    return last


@torch.no_grad()
def predict(
    head: nn.Module, inputs: torch.Tensor, *, batch_size: int, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """View-averaged class probabilities ``[N, C]`` of ``inputs`` [N, S, ...]."""
    head.eval()
    out = []
    for start in range(0, inputs.shape[0], batch_size):
        xb = inputs[start : start + batch_size].to(device)  # [b, S, ...]
        logits = head(xb.flatten(0, 1)).view(xb.shape[0], xb.shape[1], -1)  # [b, S, C]
        out.append(average_view_probs(logits).cpu())
    return torch.cat(out)


def knn_probs(
    train: FeatureSet, val: FeatureSet, *, k: int, temperature: float, num_classes: int
) -> torch.Tensor:
    """kNN scores of every val view against the bank of all train views, averaged over views."""
    bank = train.feats.flatten(0, 1)  # [N*V, D]
    bank_labels = train.labels.repeat_interleave(train.feats.shape[1])  # [N*V]
    N, V = val.feats.shape[:2]
    scores = knn_predict(
        bank,
        bank_labels,
        val.feats.flatten(0, 1),
        k=k,
        temperature=temperature,
        num_classes=num_classes,
    )  # [N*V, C]
    return scores.view(N, V, num_classes).mean(dim=1)  # [N, C]


def _grid(base: float, extra: list[float]) -> list[float]:
    """The base value plus the grid values, without repeats, in order."""
    return list(dict.fromkeys([base, *extra]))


def fit_and_select(
    cfg: Config, train: FeatureSet, val: FeatureSet, num_classes: int, device: str | torch.device
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Train one head per (lr, wd) of the grid; the val probabilities of the best + the sweep."""
    p = cfg.probe
    x_train, x_val = head_inputs(train, p.kind), head_inputs(val, p.kind)
    heads, grid = _sweep_heads(cfg, x_train.shape[-1], num_classes)
    losses = fit_on_features(
        heads,
        grid,
        x_train,
        train.labels,
        epochs=p.epochs,
        batch_size=p.batch_size,
        warmup_epochs=p.warmup_epochs,
        generator=torch.Generator().manual_seed(cfg.run.seed + 1),
        device=device,
    )
    probs = [predict(h, x_val, batch_size=p.batch_size, device=device) for h in heads]
    return select_head(cfg, grid, probs, val.labels, losses)


def select_head(
    cfg: Config,
    grid: list[tuple[float, float]],
    probs: list[torch.Tensor],
    labels: torch.Tensor,
    losses: list[float],
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The head with the best validation top-1 (first on ties) and the sweep's record."""
    p = cfg.probe
    top1 = [100.0 * (pr.argmax(1) == labels).float().mean().item() for pr in probs]
    best = max(range(len(grid)), key=lambda i: top1[i])
    sweep = {
        "selected_on_validation": len(grid) > 1,
        "lr_grid": _grid(p.lr, p.lr_grid),
        "wd_grid": _grid(p.weight_decay, p.wd_grid),
        "best": best,
        "heads": [
            {
                "index": i,
                "lr": lr,
                "weight_decay": wd,
                "top1": round(t, 3),
                "train_loss": round(loss, 5),
            }
            for i, ((lr, wd), t, loss) in enumerate(zip(grid, top1, losses))
        ],
    }
    return probs[best], sweep


def _sweep_heads(
    cfg: Config, dim: int, num_classes: int
) -> tuple[list[nn.Module], list[tuple[float, float]]]:
    """One head per (lr, wd) of the grid, all from the same seeded init (a fair comparison)."""
    p = cfg.probe
    grid = [(lr, wd) for lr in _grid(p.lr, p.lr_grid) for wd in _grid(p.weight_decay, p.wd_grid)]
    heads = [
        build_head(p.kind, dim, num_classes, cfg, torch.Generator().manual_seed(cfg.run.seed))
        for _ in grid
    ]
    return heads, grid


def fit_streaming(
    cfg: Config, encoder: nn.Module, num_classes: int, device: str | torch.device
) -> tuple[torch.Tensor, FeatureSet, int, dict[str, Any]]:
    """Attentive probe on sets too large to cache tokens (``probe.cache_features: false``).

    The frozen encoder runs every epoch on freshly augmented training clips (random clip
    positions and crops, seeded by (run.seed, epoch): the V-JEPA recipe), and once over the
    validation views, whose probabilities are accumulated per batch. Returns the best head's
    val probabilities, the val labels (as a feature-less FeatureSet), num_train and the sweep.
    """
    p = cfg.probe
    manifest = read_shard_manifest(p.train_shards)
    if manifest is None:
        raise FileNotFoundError(
            f"{p.train_shards}: streaming probes need the shards' manifest.json"
        )
    num_train = int(manifest["count"])
    heads, grid = _sweep_heads(cfg, encoder.embed_dim, num_classes)
    # Random clips and crops, never flips (label-changing): see train_view_loader.
    train_loader = train_view_loader(
        p.train_shards, cfg.data, p.train_clips, p.batch_size, seed=cfg.run.seed
    )

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for keys, y, f in extract_features(encoder, train_loader, pooled=False, device=device):
            x = head_inputs(FeatureSet(keys, y, f, p.train_clips, 1), "attentive")  # [B, 1, C*T, D]
            yield x.flatten(0, 1), y

    losses = fit_heads(heads, grid, epoch_batches, epochs=p.epochs,
                       steps_per_epoch=math.ceil(num_train / p.batch_size),
                       warmup_epochs=p.warmup_epochs, device=device)  # fmt: skip
    val_loader = view_loader(p.val_shards, cfg.data, p.eval_clips, p.eval_crops, p.batch_size)
    probs: list[list[torch.Tensor]] = [[] for _ in heads]
    keys, labels = [], []
    for k, y, f in extract_features(encoder, val_loader, pooled=False, device=device):
        x = head_inputs(
            FeatureSet(k, y, f, p.eval_clips, p.eval_crops), "attentive"
        )  # [B, crops, ...]
        for i, head in enumerate(heads):
            probs[i].append(predict(head, x, batch_size=p.batch_size, device=device))
        keys += k
        labels.append(y)
    if not keys:
        raise FileNotFoundError(f"no samples found in {p.val_shards}")
    val = FeatureSet(keys, torch.cat(labels), torch.zeros(len(keys), 0), p.eval_clips, p.eval_crops)
    best, sweep = select_head(cfg, grid, [torch.cat(pr) for pr in probs], val.labels, losses)
    return best, val, num_train, sweep


def _adamw(head: nn.Module, lr: float, wd: float) -> torch.optim.AdamW:
    """AdamW over the head with the loop's no-decay rule (1-D parameters, query tokens)."""
    return torch.optim.AdamW(param_groups([head], wd), lr=lr)
