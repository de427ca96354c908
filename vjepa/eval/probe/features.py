"""Frozen-encoder feature extraction (``vjepa extract``) and the on-disk feature layout.

Output layout of :func:`extract` / :func:`write_features` (a folder)::

    out/
      index.json                   format, pooled, shape per sample, views, backbone identity,
                                   keys, labels, label_names and the list of chunk files
      features-00000.safetensors   tensor "features" [n, ...] (+ "labels" [n]), or
      features-00000.npy           the same features as a plain .npy array
      features-00001.*             ... one file per chunk of ``chunk_size`` samples

Per-sample feature shape: pooled ``[D]`` (tokens ``[N, D]``) when there is one view per
video, else ``[V, D]`` (``[V, N, D]``) with views ordered clip-major
(``v = clip * num_crops + crop``). Features are written chunk by chunk as the loader streams,
so memory stays flat however large the set; :func:`load_features` reads them back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vjepa.artifacts.arch import model_arch
from vjepa.artifacts.encoder import load_encoder, random_encoder
from vjepa.config import ConfigError, DataConfig, ModelConfig
from vjepa.data.loader import make_eval_loader
from vjepa.data.writer import read_manifest
from vjepa.models.encoder import SIZES
from vjepa.train.faults import hold_run_folder

FeatureFormat = Literal["npy", "safetensors"]
Batch = tuple[list[str], torch.Tensor, torch.Tensor]


def extract_features(
    encoder: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    pooled: bool,
    device: str | torch.device,
) -> Iterator[Batch]:
    """Run the frozen ``encoder`` over eval batches; yield ``(keys, labels, feats)`` on the CPU.

    ``feats`` is ``[B, V, D]`` when ``pooled`` (the encoder's ``pool``), else ``[B, V, N, D]``.
    """
    encoder.eval()
    for batch in loader:
        video = batch["video"]  # [B, V, C, T, H, W]
        B, V = video.shape[:2]
        with torch.inference_mode():
            x = video.flatten(0, 1).to(device, non_blocking=True).float()  # [B*V, C, T, H, W]
            tokens = encoder(x)  # [B*V, N, D]
            feats = encoder.pool(tokens) if pooled else tokens  # [B*V, D] | [B*V, N, D]
            feats = feats.float().cpu()
        # clone() outside inference mode: the head trainer needs normal (autograd-able) tensors.
        yield (
            list(batch["key"]),
            batch["label"].long().clone(),
            feats.clone().view(B, V, *feats.shape[1:]),
        )


def _save_chunk(feats: torch.Tensor, labels: torch.Tensor, path: Path, fmt: FeatureFormat) -> None:
    if fmt == "safetensors":
        save_file({"features": feats.contiguous(), "labels": labels.contiguous()}, str(path))
    else:
        np.save(path, feats.numpy())


def write_features(
    stream: Iterable[Batch],
    out: Path,
    *,
    fmt: FeatureFormat = "safetensors",
    chunk_size: int = 4096,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a ``(keys, labels, feats [B, V, ...])`` stream as chunk files + ``index.json``."""
    if fmt not in ("npy", "safetensors"):
        raise ValueError(f"feature format must be npy or safetensors, got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    labels: list[int] = []
    chunks: list[dict[str, Any]] = []
    pending: list[torch.Tensor] = []
    sample_shape: list[int] | None = None

    def flush() -> None:
        feats = torch.cat(pending)  # [n, V, ...]
        if feats.shape[1] == 1:  # one view per video: drop the view axis
            feats = feats.squeeze(1)
        name = f"features-{len(chunks):05d}.{fmt}"
        start = sum(c["count"] for c in chunks)
        _save_chunk(feats, torch.tensor(labels[start:], dtype=torch.long), out / name, fmt)
        chunks.append({"file": name, "start": start, "count": feats.shape[0]})
        pending.clear()

    for batch_keys, batch_labels, feats in stream:
        keys += batch_keys
        labels += batch_labels.tolist()
        pending.append(feats)
        sample_shape = list(feats.shape[2:]) if feats.shape[1] == 1 else list(feats.shape[1:])
        if sum(p.shape[0] for p in pending) >= chunk_size:
            flush()
    if pending:
        flush()
    index = {
        "format": fmt,
        "num_samples": len(keys),
        "sample_shape": sample_shape,
        "chunks": chunks,
        **(meta or {}),
        "keys": keys,
        "labels": labels,
    }
    tmp = out / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(out / "index.json")  # written last and atomically: its presence means complete
    return out


def read_index(path: Path) -> dict[str, Any]:
    """The ``index.json`` of a feature folder written by :func:`write_features`."""
    index_path = Path(path) / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"no feature index at {index_path} (not written by vjepa extract?)")
    return json.loads(index_path.read_text())


def iter_feature_chunks(path: Path) -> Iterator[tuple[list[str], torch.Tensor, torch.Tensor]]:
    """Yield ``(keys, labels [n], feats [n, ...])`` chunk by chunk (flat memory)."""
    path = Path(path)
    index = read_index(path)
    for chunk in index["chunks"]:
        file = path / chunk["file"]
        if index["format"] == "safetensors":
            feats = load_file(str(file))["features"]
        else:
            feats = torch.from_numpy(np.load(file))
        s, n = chunk["start"], chunk["count"]
        yield index["keys"][s : s + n], torch.tensor(index["labels"][s : s + n]), feats


def load_features(path: Path) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """All features of a folder at once: ``(keys, labels [N], feats [N, ...])``."""
    keys: list[str] = []
    labels, feats = [], []
    for k, y, f in iter_feature_chunks(path):
        keys += k
        labels.append(y)
        feats.append(f)
    if not feats:
        return keys, torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return keys, torch.cat(labels), torch.cat(feats)


def view_loader(
    shards: str, data_cfg: DataConfig, num_clips: int, num_crops: int, batch_size: int
) -> Iterable[dict]:
    """Every sample of ``shards`` once per pass, as deterministic eval views (clips x crops)."""
    return make_eval_loader(
        shards,
        data_cfg=data_cfg,
        num_clips=num_clips,
        num_crops=num_crops,
        batch_size=batch_size,
        num_workers=data_cfg.num_workers,
    )


def train_view_loader(
    shards: str, data_cfg: DataConfig, num_clips: int, batch_size: int, seed: int
) -> Iterable[dict]:
    """Probe training views (streaming mode): random clip positions and random-resized crops.

    Never flipped, whatever ``data.hflip`` says: frozen evaluation must not apply a
    label-changing augmentation (a flip swaps SSv2's left / right classes). Each pass over the
    loader (one probe epoch) draws new views, seeded by (seed, pass).
    """
    return make_eval_loader(
        shards,
        data_cfg=replace(data_cfg, hflip=False),
        num_clips=num_clips,
        num_crops=1,
        batch_size=batch_size,
        num_workers=data_cfg.num_workers,
        train_aug=True,
        seed=seed,
    )


def load_backbone(
    backbone: str,
    *,
    random_model: str,
    data_cfg: DataConfig,
    model_cfg: ModelConfig | None,
    seed: int,
    device: str | torch.device = "cpu",
    num_heads: int | None = None,
    which: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The frozen encoder named by ``backbone`` and its identity (for reports and caches).

    ``which``: ``context`` for the context encoder of a run folder or checkpoint; None or
    ``target`` (``probe.encoder``'s default): the encoder that trained, which is the target
    encoder unless the teacher was frozen (:func:`vjepa.artifacts.sources.trained_encoder`).

    ``backbone == "random"`` builds a random-init encoder of size ``random_model`` (the floor a
    pretrained backbone must beat), initialised under ``seed`` without touching the global RNG.
    ``num_heads``: the heads of an official-format backbone of a non-official width
    (``probe.num_heads``; default: a head-dim-64 guess, said in one line).
    """
    if backbone != "random":
        which = None if which == "target" else which  # the default: the trained encoder
        encoder = load_encoder(backbone, device=device, num_heads=num_heads, which=which)
        identity = {"path": backbone, "sha256": encoder.sha256, "source": encoder.source}
        loaded_which = encoder.config["source"].get("encoder", "target")
        return encoder, identity | ({"encoder": loaded_which} if loaded_which != "target" else {})
    return random_backbone(
        random_model, data_cfg=data_cfg, model_cfg=model_cfg, seed=seed, device=device
    )


def random_backbone(
    random_model: str,
    *,
    data_cfg: DataConfig,
    model_cfg: ModelConfig | None,
    seed: int,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """A random-init encoder of size ``random_model``, wrapped like a loaded one (the floor)."""
    if random_model not in SIZES:
        raise ConfigError(f"probe.random_model {random_model!r} is not one of {', '.join(SIZES)}")
    model_cfg = model_cfg or ModelConfig()
    arch = model_arch(
        model_cfg,
        name=random_model,
        num_frames=data_cfg.frames_per_clip,
        img_size=data_cfg.crop_size,
    )
    encoder = random_encoder(arch, seed)
    # No weights file: the identity of a random backbone is (size, seed), never a sha256.
    identity = {"path": "random", "model": random_model, "seed": seed, "sha256": None}
    return encoder.to(device), identity


def extract(
    backbone: str,
    shards: str,
    out: Path,
    *,
    fmt: FeatureFormat = "safetensors",
    pooled: bool = True,
    data_cfg: DataConfig | None = None,
    num_clips: int = 1,
    num_crops: int = 1,
    batch_size: int = 16,
    chunk_size: int = 4096,
    seed: int = 0,
    device: str | torch.device = "cpu",
    num_heads: int | None = None,
) -> Path:
    """Extract frozen features of every sample of ``shards`` into the folder ``out``.

    ``data_cfg=None`` cuts clips the way the backbone expects (its ``num_frames`` and
    ``img_size``). Returns ``out``; see the module docstring for the layout.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    with hold_run_folder(out):  # one extraction per folder, before the model loads
        probe_cfg = data_cfg or DataConfig()
        encoder, identity = load_backbone(
            backbone,
            random_model="tiny_cpu",
            data_cfg=probe_cfg,
            model_cfg=None,
            seed=seed,
            device=device,
            num_heads=num_heads,
        )
        if data_cfg is None:
            data_cfg = replace(
                probe_cfg, frames_per_clip=encoder.num_frames, crop_size=encoder.img_size
            )
        loader = view_loader(shards, data_cfg, num_clips, num_crops, batch_size)
        meta = {
            "backbone": identity,
            "pooled": pooled,
            "views": f"{data_cfg.frames_per_clip}x{num_clips}x{num_crops}",
            "num_clips": num_clips,
            "num_crops": num_crops,
            "label_names": read_label_names(shards),
        }
        stream = extract_features(encoder, loader, pooled=pooled, device=device)
        return write_features(stream, Path(out), fmt=fmt, chunk_size=chunk_size, meta=meta)


def read_shard_manifest(shards: str) -> dict[str, Any] | None:
    """The ``manifest.json`` beside the shards (a folder, or a pattern's folder), if any."""
    base = Path(shards)
    try:
        return read_manifest(base if base.is_dir() else base.parent)
    except FileNotFoundError:
        return None


def read_label_names(shards: str) -> list[str] | None:
    """Class names from the shards' manifest (None when there is no manifest or no names)."""
    manifest = read_shard_manifest(shards)
    names = manifest["label_names"] if manifest is not None else None
    return list(names) if names is not None else None
