"""``vjepa finetune CONFIG [k=v ...]``: full fine-tuning of an encoder for classification.

Fine-tuning is a :class:`vjepa.train.task.Task` on the shared loop (vjepa.train.loop), so it
has pretraining's Accelerate loop, AdamW with the warmup + cosine schedules of ``optim.*``,
gradient clipping, atomic checkpoints with exact resume, the run lock, metrics.jsonl, trackers
and loss.png. What is its own (the VideoMAE / V-JEPA 2 recipe, vjepa.train.classifier):

- the model: the encoder of ``finetune.backbone`` (anything the probe accepts: a pretraining
  run or checkpoint, an export, an official file, or ``random``), trainable, with the probe's
  attentive or linear head (``finetune.head``); checkpoints hold ``encoder.safetensors`` (the
  bare ViT keys, as an export) and ``head.safetensors``;
- layer-wise lr decay (``finetune.layer_decay``: the task's parameter groups), drop path,
  label smoothing, mixup / CutMix and RandAugment (vjepa.data.randaugment, one transform per
  clip, the same on every frame; ``finetune.randaug_*``), every draw from a generator seeded
  by (run.seed, rank, batch index);
- the data: ``data.shards``, labelled, through the pretraining loader (exact resume position;
  ``data.hflip`` only where a flip keeps the class);
- the evaluation: every ``finetune.eval_every`` steps, top-1 on ``finetune.dev_shards``
  (``dev_top1``; ``train.keep_best=dev_top1`` keeps the best checkpoint in run.dir/best);
- the report: after training, the kept best checkpoint (else the last) on
  ``finetune.val_shards`` with ``eval_clips x eval_crops`` views per video (class probabilities
  averaged), written as the probe's report.json (top-1, its 95 % Wilson interval, per-class,
  per-clip predictions: ``compare_reports`` pairs a fine-tune with a probe) + confusion.png.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from torch import nn

from vjepa.artifacts.classifier import CLASSIFIER_FILE, classifier_description
from vjepa.config import Config, ConfigError, to_dict
from vjepa.data.augment import denormalize, normalize
from vjepa.data.loader import make_pretrain_loader
from vjepa.data.randaugment import rand_augment_batch
from vjepa.data.shards import expand_urls
from vjepa.data.stages import FINETUNE, HEAD, generator, seed_for
from vjepa.errors import UsageError
from vjepa.eval.probe.features import (
    load_backbone,
    read_label_names,
    read_shard_manifest,
    view_loader,
)
from vjepa.eval.probe.fit import average_view_probs
from vjepa.eval.probe.report import (
    classification_metrics,
    format_table,
    prediction_records,
    write_report,
)
from vjepa.train.checkpoint import (
    BEST_DIR,
    file_prefixes,
    join_weights,
    latest_checkpoint,
    load_checkpoint,
)
from vjepa.train.classifier import (
    Classifier,
    build_head,
    drop_path_keep,
    finetune_groups,
    mix_batch,
    soft_cross_entropy,
)
from vjepa.train.evaluation import best_checkpoint
from vjepa.train.faults import hold_run_folder
from vjepa.train.loop import run_training
from vjepa.train.pretrain import video_on_device
from vjepa.train.task import StepOutput, Task

__all__ = [
    "augmented_video",
    "build_model",
    "finetune",
    "finetune_task",
    "label_names",
    "predict_views",
]

RANDAUG_STREAM = 1  # RandAugment's generator: (the batch's seed, this)


def label_names(cfg: Config) -> list[str]:
    """The class names: the training shards' manifest, or ``finetune.num_classes`` numbers."""
    names = read_label_names(cfg.data.shards)
    n = cfg.finetune.num_classes
    if n:
        return names if names is not None and len(names) == n else [str(c) for c in range(n)]
    if names is None:
        raise ConfigError(
            f"{cfg.data.shards}: no label_names in the shards' manifest.json; set "
            "finetune.num_classes"
        )
    return names


def build_model(cfg: Config) -> Classifier:
    """The backbone of ``finetune.backbone`` (trainable) + a fresh head seeded by run.seed."""
    f = cfg.finetune
    backbone, identity = load_backbone(
        f.backbone, random_model=cfg.model.name, data_cfg=cfg.data, model_cfg=cfg.model,
        seed=cfg.run.seed, num_heads=f.num_heads, which=f.encoder,
    )  # fmt: skip
    vit = backbone.encoder.requires_grad_(True).train()  # the VisionTransformer, out of its wrapper
    vit.activation_checkpointing = cfg.model.activation_checkpointing
    num_classes = len(label_names(cfg))
    head = build_head(f, vit.embed_dim, num_classes, generator(cfg.run.seed, HEAD))
    model = Classifier(vit, head, num_classes=num_classes, drop_path=f.drop_path)
    model.identity = identity
    model.label_names = label_names(cfg)
    return model


def write_description(cfg: Config) -> None:
    """classifier.json into run.dir and run.dir/best (so each checkpoint finds it two folders
    up): the encoder's architecture, the head, the labels (vjepa.artifacts.classifier)."""
    d, f = cfg.data, cfg.finetune
    views = {
        "frames_per_clip": d.frames_per_clip, "frame_step": d.frame_step,
        "fps": d.fps, "crop_size": d.crop_size,
        "eval_clips": f.eval_clips, "eval_crops": f.eval_crops,
    }  # fmt: skip
    model = build_model(cfg)
    text = json.dumps(classifier_description(model, model.label_names, views=views), indent=2)
    for folder in (Path(cfg.run.dir), Path(cfg.run.dir) / BEST_DIR):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{CLASSIFIER_FILE}.tmp"
        tmp.write_text(text + "\n")
        tmp.replace(folder / CLASSIFIER_FILE)


def make_batches(cfg: Config, rank: int, world_size: int, start: dict | None) -> Iterator[dict]:
    """This rank's endless labelled batch stream (exact resume), each with its step's seed."""
    num_classes = len(label_names(cfg))
    loader = make_pretrain_loader(
        cfg.data, mask_fn=None, seed=cfg.run.seed, rank=rank, world_size=world_size, start=start
    )
    for batch in loader:
        labels = batch["label"]  # [B], on the CPU: checked without a device sync
        bad = ((labels < 0) | (labels >= num_classes)).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            raise UsageError(
                f"{cfg.data.shards}: sample {batch['key'][i]} has label {int(labels[i])}, not "
                f"one of the {num_classes} classes (fine-tuning needs labelled shards)"
            )
        batch["seed"] = seed_for(cfg.run.seed, FINETUNE, rank, batch["data_state"]["batch"])
        yield batch


def augmented_video(cfg: Config, batch: dict, device: torch.device) -> torch.Tensor:
    """The batch's clips on ``device``, RandAugmented (``finetune.randaug_*``), normalised:
    ``[B, C, T, H, W]`` float32. RandAugment draws from its own generator (seeded by the
    batch's seed), so turning it on leaves every other draw of the step as it was."""
    f = cfg.finetune
    if f.randaug_ops == 0:
        return video_on_device(batch, cfg, device)
    video = batch["video"].to(device, non_blocking=True)  # [B, C, T, H, W]
    pixels = video if video.dtype == torch.uint8 else denormalize(video)  # 0..255
    pixels = rand_augment_batch(
        pixels,
        num_ops=f.randaug_ops,
        magnitude=f.randaug_magnitude,
        magnitude_std=f.randaug_magnitude_std,
        rng=np.random.default_rng([batch["seed"], RANDAUG_STREAM]),
    )
    return normalize(pixels)  # [B, C, T, H, W] float32


def _forward(cfg: Config, model: nn.Module, batch: dict, device: torch.device) -> StepOutput:
    inner = getattr(model, "module", model)  # DDP wraps it; its attributes are the module's
    rng = np.random.default_rng(batch["seed"])
    video = augmented_video(cfg, batch, device)  # [B, C, T, H, W]
    labels = batch["label"].to(device, non_blocking=True)  # [B]
    video, target = mix_batch(video, labels, inner.num_classes, cfg.finetune, rng)  # [B, C]
    keep = None
    if max(inner.drop_rates) > 0:
        keep = drop_path_keep(inner.drop_rates, video.shape[0], rng).to(device)  # [L, 2, B]
    logits = model(video, keep)  # [B, C]
    return StepOutput(loss=soft_cross_entropy(logits, target))


def predict_views(
    model: nn.Module, shards: str, cfg: Config, device: torch.device
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """``(keys, labels [N], probs [N, C])``: class probabilities averaged over the
    ``eval_clips x eval_crops`` views of every video of ``shards`` (model in eval mode)."""
    f = cfg.finetune
    keys: list[str] = []
    labels, probs = [], []
    for batch in view_loader(shards, cfg.data, f.eval_clips, f.eval_crops, f.eval_batch_size):
        video = batch["video"]  # [B, V, C, T, H, W]
        B, V = video.shape[:2]
        x = video.flatten(0, 1).to(device, non_blocking=True)  # [B*V, C, T, H, W]
        x = normalize(x) if x.dtype == torch.uint8 else x  # data.normalize_on_device
        logits = model(x).view(B, V, -1)  # [B, V, C]
        probs.append(average_view_probs(logits).cpu())  # [B, C]
        labels.append(batch["label"])
        keys += batch["key"]
    if not keys:
        raise FileNotFoundError(f"no samples found in {shards}")
    return keys, torch.cat(labels), torch.cat(probs)


def _evaluate(cfg: Config, model: nn.Module, device: torch.device) -> dict[str, float]:
    """dev_top1 (percent) on ``finetune.dev_shards`` (called by the loop, no grad, eval mode)."""
    _, labels, probs = predict_views(model, cfg.finetune.dev_shards, cfg, device)
    return {"dev_top1": round(100.0 * (probs.argmax(dim=1) == labels).float().mean().item(), 3)}


def finetune_task() -> Task:
    """Fine-tuning as a :class:`vjepa.train.task.Task` (every part takes the loop's config)."""
    return Task(
        name="finetune",
        build_model=build_model,
        batches=make_batches,
        forward=_forward,
        rows=lambda batch: int(batch["video"].shape[0]),
        param_groups=lambda cfg, model: finetune_groups(
            model, cfg.optim.weight_decay, cfg.finetune.layer_decay
        ),
        evaluate=_evaluate,
        eval_every=lambda cfg: cfg.finetune.eval_every if cfg.finetune.dev_shards else 0,
    )


def _load_weights(model: nn.Module, folder: Path) -> dict[str, Any]:
    """Put a checkpoint's weights into ``model`` (strict); returns the checkpoint."""
    ckpt = load_checkpoint(folder)
    names = [n for n, _ in model.named_children()]
    model.load_state_dict(join_weights({k: ckpt[k] for k in names}, file_prefixes(model)))
    return ckpt


def final_report(cfg: Config, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Score the kept best checkpoint (else the last) on ``finetune.val_shards``; writes
    report.json and confusion.png into run.dir and prints the table; returns the report."""
    f, run_dir = cfg.finetune, Path(cfg.run.dir)
    best = best_checkpoint(run_dir) if cfg.train.keep_best else None
    folder = best or latest_checkpoint(run_dir)
    if folder is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to report on")
    model = build_model(cfg)
    ckpt = _load_weights(model, folder)
    model.to(device).eval()
    with torch.no_grad():
        keys, labels, probs = predict_views(model, f.val_shards, cfg, torch.device(device))
    names = label_names(cfg)
    manifest = read_shard_manifest(cfg.data.shards)
    frames = cfg.data.frames_per_clip
    report = {
        **classification_metrics(probs, labels, names),
        "chance": round(100.0 / len(names), 3),
        "kind": "finetune",
        "head": f.head,
        "backbone": model.identity,
        "views": f"{frames}x{f.eval_clips}x{f.eval_crops}",
        "train_views": f"{frames}x{cfg.data.num_clips}x1",
        "num_train": int(manifest["count"]) if manifest else None,
        "num_val": len(keys),
        "num_classes": len(names),
        "max_steps": cfg.train.max_steps,
        "checkpoint": {
            "path": str(folder),
            "step": int(ckpt["step"]),
            "chosen_on": cfg.train.keep_best if best else "last step",
            "value": ckpt["counters"].get("best_value") if best else None,
        },
        # the checkpoint was chosen on the very clips reported: say so
        "selected_on_validation": bool(best) and f.dev_shards == f.val_shards,
        "predictions": prediction_records(keys, probs, labels),
        "config": to_dict(cfg),
    }
    write_report(report, run_dir)
    print(format_table(report))
    return report


def finetune(cfg: Config) -> dict[str, Any]:
    """Run (or resume) fine-tuning into ``cfg.run.dir``, then write its report.json (main
    process); returns the report (an empty dict on the other processes)."""
    f = cfg.finetune
    if not f.val_shards:
        raise ConfigError("finetune.val_shards is empty: give the labelled shards to report on")
    for shards in (cfg.data.shards, f.dev_shards, f.val_shards):
        if shards:
            expand_urls(shards)  # a wrong path fails here, before the run folder exists
    label_names(cfg)
    with hold_run_folder(cfg.run.dir):  # the training and its report (the loop nests in it)
        state = PartialState()
        if state.is_main_process:
            write_description(cfg)
        run_training(cfg, finetune_task())
        return final_report(cfg, state.device) if state.is_main_process else {}
