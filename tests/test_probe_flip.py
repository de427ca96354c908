"""Frozen evaluation never flips: a flip swaps left / right labels (issue 11, item 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vjepa.config import DataConfig
from vjepa.data.encode import encode_frames
from vjepa.data.formats import VideoItem
from vjepa.data.writer import write_shards
from vjepa.eval.probe.features import train_view_loader, view_loader


def ramp_video(path: Path) -> None:
    """Dark on the left, bright on the right: a flipped view is bright on the left."""
    x = np.linspace(20, 235, 64, dtype=np.float32)  # [W]
    frame = np.broadcast_to(x[None, :, None], (48, 64, 3))  # [H, W, 3]
    frames = np.repeat(frame[None], 8, axis=0).astype(np.uint8)  # [T, H, W, 3]
    path.write_bytes(encode_frames(frames, fps=8, fmt="mp4", codec="libx264"))


def test_probe_training_views_are_never_flipped(tmp_path: Path) -> None:
    items = []
    for i in range(4):
        ramp_video(tmp_path / f"v{i}.mp4")
        items.append(VideoItem(str(tmp_path / f"v{i}.mp4"), label=i % 2, label_name=f"c{i % 2}"))
    write_shards(items, tmp_path / "shards", progress=False)
    # hflip=True is the pretraining default; the probe must ignore it.
    cfg = DataConfig(frames_per_clip=4, frame_step=1, crop_size=32, num_workers=0, hflip=True)
    loader = train_view_loader(str(tmp_path / "shards"), cfg, num_clips=1, batch_size=4, seed=0)
    views = [b["video"] for _ in range(6) for b in loader]  # 6 passes: 24 random views
    video = np.concatenate([v.numpy() for v in views])  # [24, 1, C, T, S, S]
    left = video[..., : 32 // 2].mean(axis=(1, 2, 3, 4, 5))  # [24]
    right = video[..., 32 // 2 :].mean(axis=(1, 2, 3, 4, 5))
    # With flips at p = 0.5, all 24 unflipped has probability 2^-24.
    assert video.shape[0] == 24
    assert (left < right).all(), f"{int((left >= right).sum())} of 24 views were flipped"
    val = next(iter(view_loader(str(tmp_path / "shards"), cfg, 1, 1, 4)))["video"].numpy()
    assert val[..., :16].mean() < val[..., 16:].mean()
