"""Frozen features of a labelled shard set, view by view, for the probe.

A :class:`FeatureSet` holds every video's views clip-major (``v = clip * num_crops + crop``);
:func:`head_inputs` groups them the way a head predicts (attentive: all clips of one crop
together; linear / kNN: each view alone). :func:`collect_features` extracts them once, from
``run.dir/features/`` when a cache with the same backbone and views is there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vjepa.config import Config, DataConfig
from vjepa.eval.probe.features import (
    extract_features,
    load_features,
    read_index,
    view_loader,
    write_features,
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
