"""Fine-tuned classifiers as files: the description a `vjepa finetune` run writes, and
:func:`load_classifier`, which rebuilds the classifier of a run, checkpoint or export folder.

A fine-tuning run folder holds ``classifier.json`` (also in ``run.dir/best``, so each
checkpoint finds it two folders up)::

    {"format_version": 1, "kind": "classifier",
     "architecture": {...},           the encoder's ARCH_KEYS (as an export's config.json)
     "normalization": {...},          mean / std of the input
     "head": {"kind": "attentive" | "linear", "heads", "depth", "num_queries"},
     "label_names": [...],            line i = class i (the training shards' manifest)
     "backbone": {...},               where the encoder started from
     "views": {...}}                  the clip geometry it was trained and scored with

Its checkpoints hold ``encoder.safetensors`` (the bare ViT keys) and ``head.safetensors``.
`vjepa export` of such a run writes an ordinary encoder export (model.safetensors +
config.json, so vjepa.load_encoder reads the fine-tuned encoder) plus ``head.safetensors`` and a
``classifier`` section in config.json. A run or checkpoint folder is itself a valid source of
vjepa.load_encoder and ``probe.backbone`` (a run: its kept best checkpoint, else the last).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vjepa.artifacts.arch import arch_of, build_encoder_from_arch
from vjepa.artifacts.official import load_state_strict
from vjepa.artifacts.sources import (
    CLASSIFIER_FILE,
    FORMAT_VERSION,
    HEAD_FILE,
    ExportSourceError,
    Loaded,
    read,
)
from vjepa.data.augment import imagenet_normalization
from vjepa.eval.probe.heads import AttentiveClassifier, LinearProbe
from vjepa.train.classifier import Classifier

__all__ = ["CLASSIFIER_FILE", "classifier_description", "classifier_from", "load_classifier"]


def head_description(head: nn.Module) -> dict[str, Any]:
    """The constructor arguments of a built classification head."""
    if isinstance(head, AttentiveClassifier):
        pooler = head.pooler
        return {
            "kind": "attentive",
            "heads": pooler.cross.num_heads,
            "depth": len(pooler.blocks) + 1,
            "num_queries": int(pooler.query_tokens.shape[1]),
        }
    if isinstance(head, LinearProbe):
        return {"kind": "linear", "standardize": head.standardize}
    raise TypeError(f"not a classification head of this project: {type(head).__name__}")


def classifier_description(
    model: Classifier, label_names: list[str], *, views: dict[str, Any]
) -> dict[str, Any]:
    """classifier.json of a fine-tuning run: everything but the weights."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": "classifier",
        "architecture": arch_of(model.encoder),
        "normalization": imagenet_normalization(),
        "head": head_description(model.head),
        "label_names": list(label_names),
        "backbone": model.identity,
        "views": views,
    }


def _build_head(desc: dict[str, Any], dim: int, num_classes: int) -> nn.Module:
    if desc["kind"] == "attentive":
        return AttentiveClassifier(
            dim, num_classes, num_heads=desc["heads"], depth=desc["depth"],
            num_queries=desc.get("num_queries", 1),
        )  # fmt: skip
    if desc["kind"] == "linear":
        return LinearProbe(dim, num_classes, standardize=desc.get("standardize", True))
    raise ExportSourceError(f"unknown classifier head kind {desc['kind']!r}")


def classifier_from(loaded: Loaded, source: str) -> Classifier:
    """The :class:`Classifier` of a read fine-tuned classifier, loaded strictly, eval mode."""
    desc = loaded.classifier
    if desc is None or "head" not in loaded.extras:
        raise ExportSourceError(
            f"{source}: not a fine-tuned classifier (no {CLASSIFIER_FILE} in the run folder, "
            f"no classifier section in config.json, or no {HEAD_FILE})"
        )
    encoder = build_encoder_from_arch(loaded.arch)
    load_state_strict(encoder, loaded.state, f"{source} (fine-tuned encoder)")
    names = list(desc["label_names"])
    head = _build_head(desc["head"], loaded.arch["width"], len(names))
    load_state_strict(head, loaded.extras["head"], f"{source} ({HEAD_FILE})")
    model = Classifier(encoder, head, num_classes=len(names), drop_path=0.0)
    model.identity = dict(loaded.provenance)
    model.label_names = names
    return model.eval().requires_grad_(False)


def load_classifier(path: str | Path, *, device: str | torch.device = "cpu") -> Classifier:
    """The fine-tuned classifier of a `vjepa finetune` run folder (its kept best checkpoint,
    else the last), one of its checkpoints, or an export of one: ``model(video) -> logits``
    ``[B, C]`` for ImageNet-normalised ``[B, 3, T, H, W]`` clips; ``model.label_names``."""
    loaded = read(path, with_extras=True)
    return classifier_from(loaded, str(path)).to(device)
