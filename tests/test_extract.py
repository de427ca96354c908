"""Feature extraction: the frozen encoder over eval batches, streamed to chunked files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa.config import DataConfig, ModelConfig
from vjepa.eval.probe.features import (
    extract_features,
    iter_feature_chunks,
    load_features,
    random_backbone,
    read_index,
    write_features,
)

FRAMES, SIZE, PATCH = 4, 16, 8
TOKENS = (FRAMES // 2) * (SIZE // PATCH) ** 2  # tubelet 2


@pytest.fixture(scope="module")
def encoder():
    data_cfg = DataConfig(frames_per_clip=FRAMES, crop_size=SIZE)
    enc, identity = random_backbone(
        "tiny_cpu", data_cfg=data_cfg, model_cfg=ModelConfig(patch_size=PATCH), seed=0
    )
    assert identity == {"path": "random", "model": "tiny_cpu", "seed": 0, "sha256": None}
    return enc


def batches(n: int, views: int, batch_size: int):
    """Hand-made eval batches (the loader's contract): video [B, V, C, T, H, W]."""
    g = torch.Generator().manual_seed(5)
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        out.append(
            {
                "video": torch.randn(b, views, 3, FRAMES, SIZE, SIZE, generator=g),
                "label": torch.arange(start, start + b) % 3,
                "key": [f"clip{i:03d}" for i in range(start, start + b)],
            }
        )
    return out


def test_random_backbone_is_seeded(encoder):
    data_cfg = DataConfig(frames_per_clip=FRAMES, crop_size=SIZE)
    again, _ = random_backbone(
        "tiny_cpu", data_cfg=data_cfg, model_cfg=ModelConfig(patch_size=PATCH), seed=0
    )
    other, _ = random_backbone(
        "tiny_cpu", data_cfg=data_cfg, model_cfg=ModelConfig(patch_size=PATCH), seed=1
    )
    x = torch.randn(1, 3, FRAMES, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(encoder(x), again(x))
        assert not torch.allclose(encoder(x), other(x))
    assert not any(p.requires_grad for p in encoder.parameters())


def test_extract_features_shapes_and_values(encoder):
    data = batches(5, views=2, batch_size=3)
    out = list(extract_features(encoder, data, pooled=False, device="cpu"))
    assert [k for k, _, _ in out] == [data[0]["key"], data[1]["key"]]
    keys, labels, feats = out[0]
    assert feats.shape == (3, 2, TOKENS, encoder.embed_dim)
    assert not feats.is_inference()  # heads can train on it
    with torch.no_grad():
        direct = encoder(data[0]["video"][1, 1][None])  # [1, N, D]
    assert torch.allclose(feats[1, 1], direct[0], atol=1e-5)
    pooled = next(extract_features(encoder, data, pooled=True, device="cpu"))[2]
    assert pooled.shape == (3, 2, encoder.embed_dim)
    assert torch.allclose(pooled, feats.mean(dim=2), atol=1e-5)
    assert labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("fmt", ["npy", "safetensors"])
@pytest.mark.parametrize("pooled", [True, False])
def test_write_features_chunks_roundtrip(encoder, tmp_path: Path, fmt: str, pooled: bool):
    data = batches(11, views=1, batch_size=2)
    expected = torch.cat(
        [f for _, _, f in extract_features(encoder, data, pooled=pooled, device="cpu")]
    )
    out = write_features(
        extract_features(encoder, data, pooled=pooled, device="cpu"),
        tmp_path / "feats",
        fmt=fmt,
        chunk_size=4,
        meta={"pooled": pooled},
    )
    index = read_index(out)
    # 11 samples, batches of 2, chunk of >= 4 -> chunks of 4, 4, 3
    assert [c["count"] for c in index["chunks"]] == [4, 4, 3]
    assert all((out / c["file"]).is_file() and c["file"].endswith(fmt) for c in index["chunks"])
    assert index["num_samples"] == 11 and index["keys"][10] == "clip010"
    assert index["labels"] == [i % 3 for i in range(11)]
    D = encoder.embed_dim
    assert index["sample_shape"] == ([D] if pooled else [TOKENS, D])  # one view: no view axis
    keys, labels, feats = load_features(out)
    assert keys == [f"clip{i:03d}" for i in range(11)]
    assert labels.tolist() == index["labels"]
    assert feats.shape == ((11, D) if pooled else (11, TOKENS, D))
    assert torch.allclose(feats, expected.squeeze(1))
    if fmt == "npy":  # plain numpy files, readable without vjepa
        assert np.load(out / "features-00002.npy").shape[0] == 3
    chunk_sizes = [f.shape[0] for _, _, f in iter_feature_chunks(out)]
    assert chunk_sizes == [4, 4, 3]


def test_write_features_keeps_view_axis_for_several_views(encoder, tmp_path: Path):
    data = batches(3, views=3, batch_size=2)
    out = write_features(extract_features(encoder, data, pooled=True, device="cpu"), tmp_path / "f")
    _, _, feats = load_features(out)
    assert feats.shape == (3, 3, encoder.embed_dim)
    assert json.loads((out / "index.json").read_text())["sample_shape"] == [3, encoder.embed_dim]


def test_read_index_missing(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="index.json"):
        read_index(tmp_path)
    with pytest.raises(ValueError, match="npy or safetensors"):
        write_features([], tmp_path / "x", fmt="pt")


@pytest.mark.parametrize("fmt", ["npy", "safetensors"])
def test_extract_real_shards(tmp_path: Path, fmt: str):
    from vjepa.data.formats import read_list
    from vjepa.data.writer import write_shards
    from vjepa.eval.probe.features import extract

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    listing = read_list(sample / "val.txt")
    items = listing.items[::12]  # 6 real mp4s, one per class
    shards = tmp_path / "shards"
    write_shards(items, shards, max_count=4, label_names=listing.label_names, progress=False)
    data_cfg = DataConfig(frames_per_clip=FRAMES, frame_step=2, crop_size=SIZE, num_workers=0)
    out = extract(
        "random", str(shards), tmp_path / "feats", fmt=fmt, pooled=False, data_cfg=data_cfg,
        num_clips=2, num_crops=1, batch_size=4, chunk_size=4,
    )  # fmt: skip
    index = read_index(out)
    assert index["num_samples"] == 6 and len(index["chunks"]) == 2
    assert index["label_names"] == listing.label_names
    assert sorted(index["labels"]) == [it.label for it in items]
    assert index["views"] == f"{FRAMES}x2x1" and index["backbone"]["path"] == "random"
    keys, labels, feats = load_features(out)
    assert len(set(keys)) == 6
    # [N, clips, tokens, D]: random tiny_cpu (width 96) with the default 16 px patches
    assert feats.shape == (6, 2, (FRAMES // 2) * (SIZE // 16) ** 2, 96)
    assert torch.isfinite(feats).all() and feats.std() > 0.1
