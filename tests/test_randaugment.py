"""RandAugment for video (vjepa.data.randaugment): one transform per clip, the same on every
frame; seeded; n=0 is the identity; uint8 and float agree; fine-tuning applies it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vjepa.config import load_config
from vjepa.data.augment import normalize
from vjepa.data.randaugment import OPS, apply_op, rand_augment, rand_augment_batch
from vjepa.train.finetune import augmented_video
from vjepa.train.pretrain import video_on_device


def _frame(seed: int, size: int = 32) -> torch.Tensor:
    """A low-contrast textured RGB frame [3, S, S] uint8 (so autocontrast / equalize act)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(3, size // 4, size // 4, generator=gen)
    up = torch.nn.functional.interpolate(base[None], size=(size, size), mode="bilinear")[0]
    return (60 + 120 * up).round().to(torch.uint8)  # values within 60..180


def _clip(frames: int = 4, distinct: bool = True) -> torch.Tensor:
    """A hand-made clip [T, 3, S, S]: a different frame per step, or one frame repeated."""
    return torch.stack([_frame(t if distinct else 0) for t in range(frames)])


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("op", OPS)
def test_each_op_is_one_transform_for_every_frame(op: str) -> None:
    """Applying an op to the clip equals applying the same drawn op to each frame alone."""
    clip = _clip()
    whole = apply_op(clip, op, 9.0, _rng(3))
    per_frame = torch.cat([apply_op(f[None], op, 9.0, _rng(3)) for f in clip])
    assert torch.equal(whole, per_frame)
    assert whole.dtype == torch.uint8 and whole.shape == clip.shape
    assert not torch.equal(whole, clip), f"{op} at magnitude 9 left the clip unchanged"


def test_frames_of_a_clip_get_the_same_transform() -> None:
    """A clip of one repeated frame stays a clip of one repeated frame, for many draws."""
    clip = _clip(distinct=False)
    changed = 0
    for seed in range(40):
        out = rand_augment(clip, num_ops=4, magnitude=9.0, magnitude_std=0.5, rng=_rng(seed))
        assert all(torch.equal(out[0], out[t]) for t in range(1, len(out))), seed
        changed += not torch.equal(out, clip)
    assert changed >= 30  # 4 ops at p 0.5: all skipped in 1/16 of the draws


def test_different_clips_differ_and_seeds_repeat() -> None:
    clip = _clip().permute(1, 0, 2, 3)  # [C, T, H, W]
    batch = clip[None].repeat(8, 1, 1, 1, 1)  # [8, C, T, H, W], the same clip 8 times
    a = rand_augment_batch(batch, num_ops=2, magnitude=7.0, magnitude_std=0.5, rng=_rng(0))
    b = rand_augment_batch(batch, num_ops=2, magnitude=7.0, magnitude_std=0.5, rng=_rng(0))
    c = rand_augment_batch(batch, num_ops=2, magnitude=7.0, magnitude_std=0.5, rng=_rng(1))
    assert torch.equal(a, b)  # seeded
    assert not torch.equal(a, c)
    distinct = {a[i].numpy().tobytes() for i in range(8)}
    assert len(distinct) >= 5  # each clip its own draw


def test_zero_ops_is_identity() -> None:
    batch = _clip().permute(1, 0, 2, 3)[None].repeat(3, 1, 1, 1, 1)
    out = rand_augment_batch(batch, num_ops=0, magnitude=10.0, magnitude_std=1.0, rng=_rng(0))
    assert torch.equal(out, batch)
    one = rand_augment(batch[0].permute(1, 0, 2, 3), num_ops=0, magnitude=10.0,
                       magnitude_std=1.0, rng=_rng(0))  # fmt: skip
    assert torch.equal(one, batch[0].permute(1, 0, 2, 3))


def test_float_frames_give_the_uint8_result() -> None:
    clip = _clip()
    for seed in range(10):
        u = rand_augment(clip, num_ops=3, magnitude=8.0, magnitude_std=0.5, rng=_rng(seed))
        f = rand_augment(clip.float(), num_ops=3, magnitude=8.0, magnitude_std=0.5, rng=_rng(seed))
        assert f.dtype == torch.float32
        assert torch.equal(f, u.float())


def test_wrong_layout_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\[T, 3, H, W\]"):
        rand_augment(torch.zeros(3, 4, 8, 8, dtype=torch.uint8), num_ops=1, magnitude=5.0,
                     magnitude_std=0.0, rng=_rng(0))  # fmt: skip


@pytest.mark.parametrize("dtype", ["uint8", "normalised float"])
def test_finetune_step_applies_it(dtype: str) -> None:
    """Fine-tuning's batch video: unchanged with randaug_ops 0, augmented (same for the same
    batch seed, uint8 and normalised-float batches alike) with it on."""
    clips = torch.stack([_clip().permute(1, 0, 2, 3) for _ in range(4)])  # [4, C, T, H, W]
    video = clips if dtype == "uint8" else normalize(clips)
    batch = {"video": video, "seed": 123}
    off = load_config(None, ["finetune.randaug_ops=0"], command="finetune")
    on = load_config(None, ["finetune.randaug_ops=4", "finetune.randaug_magnitude=9"],
                     command="finetune")  # fmt: skip
    cpu = torch.device("cpu")
    assert torch.equal(augmented_video(off, batch, cpu), video_on_device(batch, off, cpu))
    a = augmented_video(on, batch, cpu)
    expected = normalize(
        rand_augment_batch(
            clips, num_ops=4, magnitude=9.0, magnitude_std=0.5, rng=np.random.default_rng([123, 1])
        )  # fmt: skip
    )
    assert torch.allclose(a, expected, atol=1e-4)
    assert not torch.allclose(a, video_on_device(batch, off, cpu))
