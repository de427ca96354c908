"""``vjepa probe``: evaluate a frozen backbone with an attentive, linear or kNN probe.

The recipe (V-JEPA's frozen evaluation, made cheap):

1. Frozen features of every view are extracted ONCE: ``train_clips`` centre-crop clips per
   training video, ``eval_clips x eval_crops`` views per validation video. Attentive probes
   keep the patch tokens in memory; linear and kNN keep pooled features, cached on disk in
   ``run.dir/features/`` when ``probe.cache_features`` (a rerun with another lr reuses them).
2. Heads train on the cached features: AdamW, linear warmup + cosine lr per step, one head per
   (lr, wd) of the grid, all in the same pass over the features, all from the same seeded init.
3. Test-time views. Attentive (V-JEPA 2 style): the tokens of all temporal clips of one spatial
   crop are concatenated and pooled together; class probabilities are averaged over the crops.
   Linear / kNN: every view is classified on its own and the probabilities are averaged.
4. ``report.json``, ``confusion.png`` and a table on stdout; with a grid, the head with the best
   validation top-1 is reported and the report says ``selected_on_validation: true``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vjepa.config import Config, ConfigError, DataConfig, save_config, to_dict
from vjepa.errors import UsageError
from vjepa.eval.probe.features import (
    extract_features,
    load_backbone,
    load_features,
    read_index,
    read_label_names,
    read_shard_manifest,
    train_view_loader,
    view_loader,
    write_features,
)
from vjepa.eval.probe.heads import AttentiveClassifier, LinearProbe, init_head, knn_predict
from vjepa.eval.probe.report import (
    classification_metrics,
    format_table,
    prediction_records,
    write_report,
)


@dataclass
class FeatureSet:
    """Frozen features of one labelled set; views are clip-major (v = clip * num_crops + crop)."""

    keys: list[str]
    labels: torch.Tensor  # [N]
    feats: torch.Tensor  # [N, V, D] pooled or [N, V, T, D] tokens
    num_clips: int
    num_crops: int


def head_inputs(fs: FeatureSet, kind: str) -> torch.Tensor:
    """The per-video inputs of the head, one per prediction view: ``[N, S, ...]``.

    Attentive: ``S = num_crops`` and each input holds the tokens of all clips of that crop
    (``[N, crops, clips*T, D]``). Linear / kNN: every view on its own (``[N, V, D]``).
    """
    if kind != "attentive":
        return fs.feats  # [N, V, D]
    N, V, T, D = fs.feats.shape
    x = fs.feats.view(N, fs.num_clips, fs.num_crops, T, D).transpose(
        1, 2
    )  # [N, crops, clips, T, D]
    return x.reshape(N, fs.num_crops, fs.num_clips * T, D)  # [N, crops, clips*T, D]


def average_view_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax each view's logits ``[N, S, C]`` and average over views -> ``[N, C]``."""
    return logits.float().softmax(dim=-1).mean(dim=1)


def cosine_lr(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup from 0 to ``peak`` over ``warmup`` steps, then cosine decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


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


def _adamw(head: nn.Module, lr: float, wd: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms and query tokens (the 1-D / token params)."""
    decay = [p for n, p in head.named_parameters() if p.ndim >= 2 and "query_tokens" not in n]
    rest = [p for n, p in head.named_parameters() if not (p.ndim >= 2 and "query_tokens" not in n)]
    groups = [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def train_heads(
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
            for i, (head, opt, (lr, _)) in enumerate(zip(heads, opts, grid)):
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(step, total, warmup, lr)
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


def collect_features(
    encoder: nn.Module,
    shards: str,
    *,
    data_cfg: DataConfig,
    num_clips: int,
    num_crops: int,
    pooled: bool,
    batch_size: int,
    device: str | torch.device,
    cache_dir: Path | None = None,
    identity: dict[str, Any] | None = None,
) -> FeatureSet:
    """Frozen features of every sample of ``shards`` (once), from ``cache_dir`` when it matches.

    With ``cache_dir`` the features are streamed to disk chunk by chunk (see
    :mod:`vjepa.eval.probe.features`) and reused by a later run with the same backbone and views.
    """
    meta = {
        "backbone": identity,
        "shards": shards,
        "pooled": pooled,
        "num_clips": num_clips,
        "num_crops": num_crops,
        "clip": [data_cfg.frames_per_clip, data_cfg.frame_step, data_cfg.fps, data_cfg.crop_size],
    }
    if cache_dir is not None and (cache_dir / "index.json").is_file():
        index = read_index(cache_dir)
        if all(index.get(k) == json.loads(json.dumps(v)) for k, v in meta.items()):
            return _feature_set(*load_features(cache_dir), num_clips, num_crops)
    loader = view_loader(shards, data_cfg, num_clips, num_crops, batch_size)
    stream = extract_features(encoder, loader, pooled=pooled, device=device)
    if cache_dir is not None:
        write_features(stream, cache_dir, fmt="safetensors", meta=meta)
        return _feature_set(*load_features(cache_dir), num_clips, num_crops)
    keys: list[str] = []
    labels, feats = [], []
    for k, y, f in stream:
        keys += k
        labels.append(y)
        feats.append(f)
    if not feats:
        raise FileNotFoundError(f"no samples found in {shards}")
    return FeatureSet(keys, torch.cat(labels), torch.cat(feats), num_clips, num_crops)


def _feature_set(
    keys: list[str], labels: torch.Tensor, feats: torch.Tensor, clips: int, crops: int
) -> FeatureSet:
    """Re-add the view axis that the on-disk layout drops for a single view."""
    if not keys:
        raise FileNotFoundError("no samples in the cached feature set")
    if clips * crops == 1:
        feats = feats.unsqueeze(1)  # [N, 1, ...]
    return FeatureSet(keys, labels, feats, clips, crops)


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
    losses = train_heads(
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


def _check_probe_config(cfg: Config) -> None:
    p = cfg.probe
    for name in ("train_shards", "val_shards"):
        if not getattr(p, name):
            raise ConfigError(f"probe.{name} is empty: give the labelled shards to probe on")


def _label_names(shards: str, *label_sets: torch.Tensor) -> list[str]:
    """Class names from the shards' manifest, else "0".."C-1"; checks that labels fit."""
    names = read_label_names(shards)
    top = max(int(y.max()) for y in label_sets)
    low = min(int(y.min()) for y in label_sets)
    if low < 0:
        raise UsageError(
            f"{shards}: some samples have no label (-1); a probe needs labelled shards"
        )
    if names is None:
        names = [str(c) for c in range(top + 1)]
    if top >= len(names):
        raise UsageError(f"label {top} out of range for the {len(names)} classes of {shards}")
    return names


def probe_features(
    cfg: Config, encoder: nn.Module, identity: dict[str, Any], device: str | torch.device
) -> tuple[FeatureSet, FeatureSet]:
    """Train features (train_clips centre-crop clips) and val features (eval views), once."""
    p = cfg.probe
    pooled = p.kind != "attentive"
    cache = Path(cfg.run.dir) / "features" if pooled and p.cache_features else None
    common = {"data_cfg": cfg.data, "pooled": pooled, "batch_size": p.batch_size, "device": device}
    train = collect_features(
        encoder, p.train_shards, num_clips=p.train_clips, num_crops=1,
        cache_dir=cache / "train" if cache else None, identity=identity, **common,
    )  # fmt: skip
    val = collect_features(
        encoder, p.val_shards, num_clips=p.eval_clips, num_crops=p.eval_crops,
        cache_dir=cache / "val" if cache else None, identity=identity, **common,
    )  # fmt: skip
    return train, val


def evaluate(
    cfg: Config, encoder: nn.Module, identity: dict[str, Any], device: str | torch.device
) -> tuple[torch.Tensor, FeatureSet, int, dict[str, Any] | None, list[str]]:
    """Val probabilities of the (selected) probe, val set, num_train, sweep and class names."""
    p = cfg.probe
    if p.kind == "attentive" and not p.cache_features:
        names = read_label_names(p.train_shards)
        if names is None:
            raise FileNotFoundError(
                f"{p.train_shards}: streaming probes need label_names in manifest.json"
            )
        probs, val, num_train, sweep = fit_streaming(cfg, encoder, len(names), device)
        return probs, val, num_train, sweep, _label_names(p.train_shards, val.labels)
    train, val = probe_features(cfg, encoder, identity, device)
    label_names = _label_names(p.train_shards, train.labels, val.labels)
    if p.kind == "knn":
        probs = knn_probs(
            train, val, k=p.k, temperature=p.temperature, num_classes=len(label_names)
        )
        return probs, val, len(train.keys), None, label_names
    probs, sweep = fit_and_select(cfg, train, val, len(label_names), device)
    return probs, val, len(train.keys), sweep, label_names


def run_probe(cfg: Config) -> dict[str, Any]:
    """Probe the frozen ``cfg.probe.backbone``; writes report.json + confusion.png, returns the report.

    With ``probe.splits`` set, runs once per split (see :func:`run_splits`).
    """
    if cfg.probe.splits:
        return run_splits(cfg, cfg.probe.splits)
    _check_probe_config(cfg)
    p = cfg.probe
    run_dir = Path(cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder, identity = load_backbone(
        p.backbone, random_model=p.random_model, data_cfg=cfg.data, model_cfg=cfg.model,
        seed=cfg.run.seed, device=device, num_heads=p.num_heads, which=p.encoder,
    )  # fmt: skip
    probs, val, num_train, sweep, label_names = evaluate(cfg, encoder, identity, device)
    num_classes = len(label_names)
    frames = cfg.data.frames_per_clip
    report = {
        **classification_metrics(probs, val.labels, label_names),
        "chance": round(100.0 / num_classes, 3),
        "kind": p.kind,
        "backbone": identity,
        "views": f"{frames}x{p.eval_clips}x{p.eval_crops}",
        "train_views": f"{frames}x{p.train_clips}x1",
        "num_train": num_train,
        "num_val": len(val.keys),
        "num_classes": num_classes,
        "selected_on_validation": bool(sweep and sweep["selected_on_validation"]),
        "sweep": sweep,
        "predictions": prediction_records(val.keys, probs, val.labels),
        "config": to_dict(cfg),
    }
    write_report(report, run_dir)
    print(format_table(report))
    return report


def run_splits(cfg: Config, splits: list[int] | tuple[int, ...] = (1, 2, 3)) -> dict[str, Any]:
    """Run the probe once per split and report the mean (UCF101 / HMDB51 protocol).

    ``{split}`` in ``probe.train_shards`` / ``probe.val_shards`` is replaced by the split
    number; each split writes to ``run.dir/split<N>/``, the mean goes to ``run.dir/report.json``.
    """
    p = cfg.probe
    if "{split}" not in p.train_shards or "{split}" not in p.val_shards:
        raise ConfigError("probe.splits needs '{split}' in probe.train_shards and probe.val_shards")
    reports = {}
    for s in splits:
        split_cfg = replace(
            cfg,
            run=replace(cfg.run, dir=str(Path(cfg.run.dir) / f"split{s}")),
            probe=replace(
                p,
                splits=[],
                train_shards=p.train_shards.replace("{split}", str(s)),
                val_shards=p.val_shards.replace("{split}", str(s)),
            ),
        )
        reports[s] = run_probe(split_cfg)
    mean = {
        m: round(sum(r[m] for r in reports.values()) / len(reports), 3) for m in ("top1", "top5")
    }
    report = {
        **mean,
        "splits": {str(s): {"top1": r["top1"], "top5": r["top5"]} for s, r in reports.items()},
        "kind": p.kind,
        "backbone": next(iter(reports.values()))["backbone"],
        "views": next(iter(reports.values()))["views"],
        "config": to_dict(cfg),
    }
    write_report(report, Path(cfg.run.dir))
    print(f"mean over splits {list(splits)}: top-1 {mean['top1']:.2f}%  top-5 {mean['top5']:.2f}%")
    return report
