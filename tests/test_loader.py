"""The streaming loaders (vjepa.data.loader) on real tar shards of real mp4 bytes."""

from __future__ import annotations

import dataclasses
import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from videos import make_mp4

from vjepa.config import DataConfig
from vjepa.data.augment import normalize
from vjepa.data.errors import DataError
from vjepa.data.loader import loader_state, make_eval_loader, make_pretrain_loader
from vjepa.data.shards import ShardSpecError, expand_urls, slot_plan

_VIDEOS: dict[int, bytes] = {}


def video(seed: int, num_frames: int = 12) -> bytes:
    if (seed, num_frames) not in _VIDEOS:
        _VIDEOS[seed, num_frames] = make_mp4(num_frames=num_frames, size=(32, 24), seed=seed % 7)
    return _VIDEOS[seed, num_frames]


def write_shards(
    root: Path, num_shards: int, per_shard: int, extra: dict | None = None
) -> dict[str, int]:
    """``num_shards`` tars of ``per_shard`` good samples; returns key -> label."""
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for s in range(num_shards):
        with wds.TarWriter(str(root / f"train-{s:06d}.tar")) as tar:
            for i in range(per_shard):
                key, label = f"s{s}_{i:03d}", (s * per_shard + i) % 5
                meta = {
                    "source": f"{key}.mp4",
                    "label": label,
                    "label_name": f"c{label}",
                    "fps": 8.0,
                }
                tar.write(
                    {
                        "__key__": key,
                        "mp4": video(s * per_shard + i),
                        "json": json.dumps(meta).encode(),
                    }
                )
                labels[key] = label
            for key, sample in (extra or {}).items() if s == 0 else ():
                tar.write({"__key__": key, **sample})
    return labels


def cfg_for(root: Path, **kw) -> DataConfig:
    base = dict(
        shards=str(root),
        batch_size=2,
        num_workers=2,
        frames_per_clip=4,
        frame_step=2,
        crop_size=16,
        shuffle_buffer=4,
    )
    return DataConfig(**{**base, **kw})


def masks(batch_size: int, generator: torch.Generator) -> dict:
    return {
        "ctx_idx": [torch.randint(0, 100, (batch_size, 5), generator=generator)],
        "tgt_idx": [torch.randperm(100, generator=generator)[:3].expand(batch_size, 3)],
    }


def first_epoch_keys(cfg: DataConfig, rank: int, world_size: int) -> list[str]:
    """Keys of epoch 0 from one rank's endless stream (batch_size 1: one sample per batch)."""
    keys, done = [], set()
    for batch in make_pretrain_loader(cfg, mask_fn=None, seed=3, rank=rank, world_size=world_size):
        state = batch["data_state"]
        if state["epoch"] == 0:
            keys.extend(batch["key"])
        else:
            done.add(state["worker"])
        if len(done) == max(1, cfg.num_workers):
            return keys
    raise AssertionError("unreachable: the stream is endless")


@pytest.mark.parametrize(
    "num_shards,per_shard", [(8, 3), (2, 6)]
)  # shard-level / sample-level split
def test_two_ranks_two_workers_see_every_key_once_per_epoch(
    tmp_path: Path, num_shards: int, per_shard: int
) -> None:
    labels = write_shards(tmp_path, num_shards, per_shard)
    cfg = cfg_for(tmp_path, batch_size=1)
    keys = first_epoch_keys(cfg, 0, 2) + first_epoch_keys(cfg, 1, 2)
    assert sorted(keys) == sorted(labels)  # every key exactly once across 2 ranks x 2 workers


def take(loader, n: int) -> list[dict]:
    return list(islice(iter(loader), n))


def test_batches_are_complete_and_deterministic(tmp_path: Path) -> None:
    labels = write_shards(tmp_path, 3, 4)
    cfg = cfg_for(tmp_path, num_clips=2)
    a = take(make_pretrain_loader(cfg, mask_fn=masks, seed=1), 4)
    b = take(make_pretrain_loader(cfg, mask_fn=masks, seed=1), 4)
    c = take(make_pretrain_loader(cfg, mask_fn=masks, seed=2), 4)
    for i, (x, y) in enumerate(zip(a, b)):
        assert (
            x["video"].shape == (4, 3, 4, 16, 16) and x["video"].dtype == torch.float32
        )  # 2 videos x 2 clips
        assert (
            x["key"][0] == x["key"][1] and x["key"][2] == x["key"][3]
        )  # clips of a video are adjacent
        assert x["label"].tolist() == [labels[k] for k in x["key"]]
        assert x["data_state"]["batch"] == i and x["data_state"]["worker"] == i % 2
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["ctx_idx"][0], y["ctx_idx"][0])
        assert x["ctx_idx"][0].shape == (4, 5) and x["data_errors"] == {}
    assert not all(torch.equal(x["video"], z["video"]) for x, z in zip(a, c))
    raw = take(
        make_pretrain_loader(
            dataclasses.replace(cfg, normalize_on_device=True), mask_fn=None, seed=1
        ),
        1,
    )[0]
    assert raw["video"].dtype == torch.uint8 and raw["key"] == a[0]["key"]
    torch.testing.assert_close(normalize(raw["video"]), a[0]["video"])  # same clips, same crops


@pytest.mark.parametrize("num_workers,split", [(2, 3), (2, 4), (0, 3)])
def test_resume_is_exact(tmp_path: Path, num_workers: int, split: int) -> None:
    write_shards(tmp_path, 3, 5, extra={"bad": {"mp4": b"not a video", "json": b"{}"}})
    cfg = cfg_for(tmp_path, num_workers=num_workers)
    full = take(make_pretrain_loader(cfg, mask_fn=masks, seed=5), 8)  # crosses an epoch boundary
    head = take(make_pretrain_loader(cfg, mask_fn=masks, seed=5), split)
    start = json.loads(
        json.dumps(loader_state(split, [b["data_state"] for b in head]))
    )  # via a checkpoint
    tail = take(make_pretrain_loader(cfg, mask_fn=masks, seed=5, start=start), 8 - split)
    assert max(b["data_state"]["epoch"] for b in full) >= 1
    for x, y in zip(full, head + tail):
        assert x["key"] == y["key"] and x["data_state"] == y["data_state"]
        assert torch.equal(x["video"], y["video"])
        assert torch.equal(x["ctx_idx"][0], y["ctx_idx"][0]) and torch.equal(
            x["tgt_idx"][0], y["tgt_idx"][0]
        )


def test_resume_with_other_worker_count_is_refused(tmp_path: Path) -> None:
    write_shards(tmp_path, 2, 4)
    cfg = cfg_for(tmp_path)
    start = loader_state(
        2, [b["data_state"] for b in take(make_pretrain_loader(cfg, mask_fn=None, seed=0), 2)]
    )
    with pytest.raises(ValueError, match="num_workers"):
        take(
            make_pretrain_loader(
                dataclasses.replace(cfg, num_workers=0), mask_fn=None, seed=0, start=start
            ),
            1,
        )


def bad_samples(good: bytes) -> dict[str, dict]:
    rng = np.random.default_rng(1)
    return {
        "bad_random": {
            "mp4": rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
            "json": b'{"label": 1}',
        },
        "bad_truncated": {"mp4": good[: len(good) // 2], "json": b'{"label": 1}'},
        "bad_nojson": {"mp4": good},
        "bad_badjson": {"mp4": good, "json": b"{label: 1"},
        "bad_short": {"mp4": video(99, num_frames=3), "json": b'{"label": 2}'},
    }


def test_bad_samples_are_counted_and_never_stop_the_stream(tmp_path: Path) -> None:
    labels = write_shards(tmp_path, 2, 4, extra=bad_samples(video(0)))
    cfg = cfg_for(
        tmp_path, short_video="skip", frames_per_clip=4, frame_step=2
    )  # 3 frames < span 7
    loader = make_eval_loader(str(tmp_path), data_cfg=cfg, batch_size=3, num_workers=0)
    batches = list(loader)
    got = [k for b in batches for k in b["key"]]
    assert sorted(got) == sorted([*labels, "bad_short"])  # eval pads short videos, never drops them
    assert batches[-1]["data_errors"] == {
        "not_video": 1,
        "truncated": 1,
        "missing_json": 1,
        "bad_json": 1,
    }
    train = take(
        make_pretrain_loader(
            dataclasses.replace(cfg, num_workers=0, batch_size=1), mask_fn=None, seed=0
        ),
        9,
    )
    seen = {k for b in train for k in b["key"]}
    assert seen == set(labels)  # every good sample of the epoch came through
    errors = train[-1]["data_errors"]
    assert errors == {
        "not_video": 1,
        "truncated": 1,
        "missing_json": 1,
        "bad_json": 1,
        "too_short": 1,
    }


def test_eval_loader_every_sample_once_in_a_fixed_order(tmp_path: Path) -> None:
    labels = write_shards(tmp_path, 3, 3)
    cfg = cfg_for(tmp_path, frames_per_clip=4)
    kw = dict(data_cfg=cfg, num_clips=2, num_crops=3, batch_size=2, num_workers=2)
    a, b = list(make_eval_loader(str(tmp_path), **kw)), list(make_eval_loader(str(tmp_path), **kw))
    keys = [k for x in a for k in x["key"]]
    assert sorted(keys) == sorted(labels) and keys == [k for x in b for k in x["key"]]
    assert a[0]["video"].shape == (2, 6, 3, 4, 16, 16)  # [B, clips * crops, C, T, H, W]
    assert (
        min(len(x["key"]) for x in a) == 1
    )  # 3 shards of 3 split over 2 workers: partial batches kept
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(a, b))
    assert [labels[k] for x in a for k in x["key"]] == [v for x in a for v in x["label"].tolist()]
    halves = [
        [
            k
            for x in make_eval_loader(str(tmp_path), **{**kw, "rank": r, "world_size": 2})
            for k in x["key"]
        ]
        for r in (0, 1)
    ]
    assert sorted(halves[0] + halves[1]) == sorted(labels) and not set(halves[0]) & set(halves[1])


def test_eval_loader_with_train_augmentation_changes_every_pass(tmp_path: Path) -> None:
    labels = write_shards(tmp_path, 2, 3)
    loader = make_eval_loader(
        str(tmp_path), data_cfg=cfg_for(tmp_path), batch_size=6, train_aug=True, seed=4
    )
    first, second = list(loader), list(loader)
    assert sorted(first[0]["key"]) == sorted(labels) == sorted(second[0]["key"])
    assert first[0]["video"].shape == (6, 1, 3, 4, 16, 16)
    assert not torch.equal(first[0]["video"], second[0]["video"])


def test_resampled_stream(tmp_path: Path) -> None:
    write_shards(tmp_path, 3, 3)
    cfg = cfg_for(tmp_path, resampled=True)
    a = take(make_pretrain_loader(cfg, mask_fn=None, seed=0), 6)
    b = take(make_pretrain_loader(cfg, mask_fn=None, seed=0), 6)
    assert [x["key"] for x in a] == [x["key"] for x in b]  # seeded
    resumed = take(
        make_pretrain_loader(
            cfg, mask_fn=None, seed=0, start=loader_state(6, [x["data_state"] for x in a])
        ),
        2,
    )
    assert [x["data_state"]["batch"] for x in resumed] == [6, 7]


def test_expand_urls_and_slot_plan(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"a-{i:03d}.tar").write_bytes(b"")
    names = [str(tmp_path / f"a-{i:03d}.tar") for i in range(3)]
    assert expand_urls(str(tmp_path)) == names
    assert expand_urls(str(tmp_path / "a-*.tar")) == names
    assert expand_urls(str(tmp_path / "a-{000..001}.tar")) == names[:2]
    assert expand_urls(f"{names[2]},{names[0]}::{names[1]}") == [names[2], names[0], names[1]]
    assert expand_urls("pipe:cat x-{0..1}.tar") == ["pipe:cat x-0.tar", "pipe:cat x-1.tar"]
    assert expand_urls("https://h/d-{00..01}.tar") == ["https://h/d-00.tar", "https://h/d-01.tar"]
    assert expand_urls("s3://b/k-{0..1}.tar") == ["s3://b/k-0.tar", "s3://b/k-1.tar"]  # boto3
    assert expand_urls("gs://b/k-{0..1}.tar") == [
        "pipe:gsutil cat gs://b/k-0.tar",
        "pipe:gsutil cat gs://b/k-1.tar",
    ]
    for bad in (
        "",
        str(tmp_path / "missing.tar"),
        str(tmp_path / "zz-*.tar"),
        str(tmp_path / "sub"),
    ):
        with pytest.raises(ShardSpecError):
            expand_urls(bad)
    urls = [f"u{i}" for i in range(5)]
    plans = [
        slot_plan(urls, rank=r, world_size=2, worker=w, num_workers=2)
        for r in range(2)
        for w in range(2)
    ]
    assert sorted(u for p in plans for u in p.urls) == urls and all(p.stride == 1 for p in plans)
    few = [
        slot_plan(urls[:2], rank=r, world_size=2, worker=w, num_workers=2)
        for r in range(2)
        for w in range(2)
    ]
    assert [(p.stride, p.offset) for p in few] == [(4, 0), (4, 1), (4, 2), (4, 3)]


def test_an_epoch_without_one_decodable_sample_stops_with_the_counts(tmp_path: Path) -> None:

    write_shards(tmp_path, 1, 0, extra=bad_samples(video(0)))
    cfg = cfg_for(tmp_path, num_workers=0, short_video="skip")
    with pytest.raises(DataError, match=r"no decodable sample in epoch 0 .*not_video"):
        take(make_pretrain_loader(cfg, mask_fn=None, seed=0), 1)
