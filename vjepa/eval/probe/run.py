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

Like pretraining, a probe holds its run folder's lock (vjepa.train.faults.hold_run_folder) while
it runs: a second probe into the same ``run.dir`` stops at once (exit 2) naming the holder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from torch import nn

from vjepa.config import Config, ConfigError, save_config, to_dict
from vjepa.errors import UsageError
from vjepa.eval.probe.features import load_backbone, read_label_names
from vjepa.eval.probe.fit import fit_and_select, fit_streaming, knn_probs
from vjepa.eval.probe.report import (
    classification_metrics,
    format_table,
    prediction_records,
    write_report,
)
from vjepa.eval.probe.views import FeatureSet, probe_features
from vjepa.train.faults import hold_run_folder


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
    with hold_run_folder(cfg.run.dir):
        if cfg.probe.splits:
            return run_splits(cfg, cfg.probe.splits)
        return _run_probe(cfg)


def _run_probe(cfg: Config) -> dict[str, Any]:
    _check_probe_config(cfg)
    p = cfg.probe
    run_dir = Path(cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    device = PartialState().device  # Accelerate's device: the GPU when there is one
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
