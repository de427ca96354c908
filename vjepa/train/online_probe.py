"""The online probe of `vjepa pretrain` (``online_probe.*``): "the loss went down, is it learning?"

Every ``online_probe.every`` steps (the loop's periodic evaluation, vjepa.train.evaluation: no
grad, eval mode, the global RNG put back afterwards) the encoder being trained embeds two
labelled sets, and two cheap probes are scored on the second:

- ``online_knn_top1``: cosine kNN (the probe's :func:`knn_probs`) against the first set;
- ``online_linear_top1``: a linear head on the layer-normed mean token (the probe's
  :class:`LinearProbe` and :func:`fit_on_features`), initialised and shuffled by generators
  seeded from (run.seed, PROBE) only, the same at every call.

The sets (the first ``max_clips`` samples of each, one centre clip, the clip geometry of
``data.*``) are decoded once, on the first call, and kept as uint8 in memory, so a call costs
two encoder passes and a few hundred steps of a linear layer. ``eval_s`` in the same
metrics.jsonl row says what it cost.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from vjepa.artifacts.sources import trained_encoder
from vjepa.config import Config
from vjepa.data.augment import normalize
from vjepa.data.stages import PROBE, generator
from vjepa.errors import UsageError
from vjepa.eval.probe.features import read_label_names, view_loader
from vjepa.eval.probe.fit import fit_on_features, knn_probs, predict
from vjepa.eval.probe.heads import LinearProbe, init_head
from vjepa.eval.probe.views import FeatureSet

Clips = tuple[Tensor, Tensor, list[str]]  # uint8 [N, C, T, S, S], labels [N], keys


def probed_encoder(cfg: Config, model: nn.Module) -> nn.Module:
    """The encoder ``online_probe.encoder`` names; ``auto``: the one that trains (the
    context encoder with a frozen teacher or an online target, else the EMA target)."""
    which = cfg.online_probe.encoder
    if which == "auto":
        which = "context" if cfg.objective.target == "online" else trained_encoder(cfg)
    return model.encoder if which == "context" else model.target_encoder


def decode_set(shards: str, cfg: Config) -> Clips:
    """The first ``online_probe.max_clips`` samples of ``shards``: uint8 centre clips."""
    p = cfg.online_probe
    data = replace(cfg.data, normalize_on_device=True, num_workers=0)  # uint8, this process
    videos, labels, keys = [], [], []
    for batch in view_loader(shards, data, 1, 1, p.batch_size):
        videos.append(batch["video"][:, 0])  # [B, C, T, S, S] uint8
        labels.append(batch["label"])
        keys += batch["key"]
        if len(keys) >= p.max_clips:
            break
    if not keys:
        raise FileNotFoundError(f"online_probe: no samples found in {shards}")
    y = torch.cat(labels)[: p.max_clips]
    if bool((y < 0).any()):
        raise UsageError(f"online_probe: {shards} has unlabelled samples (-1)")
    return torch.cat(videos)[: p.max_clips], y, keys[: p.max_clips]


def embed(encoder: nn.Module, clips: Clips, batch_size: int, device: torch.device) -> FeatureSet:
    """Mean-pooled features of every clip, as a one-view :class:`FeatureSet` ([N, 1, D])."""
    video, labels, keys = clips
    feats = []
    for start in range(0, video.shape[0], batch_size):
        x = normalize(video[start : start + batch_size].to(device))  # [b, C, T, S, S]
        feats.append(encoder(x).mean(dim=1).float().cpu())  # [b, D]
    return FeatureSet(keys, labels, torch.cat(feats)[:, None], 1, 1)  # [N, 1, D]


def _top1(probs: Tensor, labels: Tensor) -> float:
    return round(100.0 * (probs.argmax(dim=1) == labels).float().mean().item(), 3)


class OnlineProbe:
    """Pretraining's ``Task.evaluate``: the sets are decoded on the first call and kept."""

    def __init__(self) -> None:
        self.sets: dict[str, Clips] = {}

    def __call__(self, cfg: Config, model: nn.Module, device: torch.device) -> dict[str, float]:
        p = cfg.online_probe
        for name, shards in (("train", p.train_shards), ("val", p.val_shards)):
            if name not in self.sets:
                self.sets[name] = decode_set(shards, cfg)
        encoder = probed_encoder(cfg, model)
        train = embed(encoder, self.sets["train"], p.batch_size, device)
        val = embed(encoder, self.sets["val"], p.batch_size, device)
        names = read_label_names(p.train_shards)
        top = int(max(train.labels.max(), val.labels.max()))
        num_classes = max(len(names) if names else 0, top + 1)
        knn = knn_probs(train, val, k=p.k, temperature=p.temperature, num_classes=num_classes)
        head = init_head(
            LinearProbe(train.feats.shape[-1], num_classes), generator(cfg.run.seed, PROBE)
        )
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            fit_on_features(
                [head], [(p.lr, 0.0)], train.feats, train.labels, epochs=p.epochs,
                batch_size=p.batch_size, warmup_epochs=0,
                generator=generator(cfg.run.seed, PROBE, 1), device=device,
            )  # fmt: skip
        linear = predict(head, val.feats, batch_size=len(val.keys), device=device)
        return {
            "online_knn_top1": _top1(knn, val.labels),
            "online_linear_top1": _top1(linear, val.labels),
        }
