"""RandAugment for video clips: the same ops, with the same magnitudes, on every frame of a clip.

The op set and magnitude mappings are timm's ``rand-m{M}-n{N}-mstd{S}-inc1`` policy (the
"increasing" variants), which VideoMAE fine-tunes with (``rand-m7-n4-mstd0.5-inc1``,
MCG-NJU/VideoMAE ``run_class_finetuning.py``): per clip, ``num_ops`` ops drawn uniformly with
replacement, each applied with probability 0.5, at magnitude ``M`` plus Gaussian noise of std
``S`` (clamped to [0, 10]); signed ops (rotate, shear, translate, the enhancements) take a
random sign. VideoMAE applies the one drawn transform to every frame of the clip (its
``video_transforms`` map a PIL policy over the frame list); here the ops are torchvision's
functional ops on a ``[T, C, H, W]`` tensor, which apply one set of parameters to every frame:
the same temporal consistency, no fake motion. Per-image statistics (autocontrast, equalize,
the contrast mean) are per frame, as with PIL.

Every draw comes from the numpy generator the caller passes (fine-tuning seeds it from
(run.seed, rank, batch index)), never from a global RNG, so a resumed run repeats an
uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

OPS: tuple[str, ...] = (
    "autocontrast",
    "equalize",
    "invert",
    "rotate",
    "posterize",
    "solarize",
    "solarize_add",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
"""timm's ``_RAND_INCREASING_TRANSFORMS``, in its order."""

MAX_MAGNITUDE = 10.0
APPLY_PROB = 0.5  # timm's AugmentOp default inside rand_augment_transform
FILL = [128.0, 128.0, 128.0]  # timm's fill colour for the geometric ops


def _signed(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() < 0.5 else value


def apply_op(
    clip: torch.Tensor, op: str, magnitude: float, rng: np.random.Generator
) -> torch.Tensor:
    """One op on a uint8 clip ``[T, C, H, W]`` at ``magnitude`` in [0, 10] (same on every frame)."""
    m = magnitude / MAX_MAGNITUDE
    H, W = clip.shape[-2:]
    if op == "autocontrast":
        return TF.autocontrast(clip)
    if op == "equalize":
        return TF.equalize(clip)
    if op == "invert":
        return TF.invert(clip)
    if op == "rotate":
        angle = _signed(30.0 * m, rng)
        return TF.rotate(clip, angle, interpolation=InterpolationMode.BILINEAR, fill=FILL)
    if op == "posterize":
        return TF.posterize(clip, 4 - int(4 * m))  # increasing: fewer bits at higher m
    if op == "solarize":
        return TF.solarize(clip, 256 - int(256 * m))  # increasing: lower threshold
    if op == "solarize_add":
        add = int(110 * m)
        bright = (clip.to(torch.int16) + add).clamp_(0, 255).to(torch.uint8)
        return torch.where(clip < 128, bright, clip)
    if op in ("color", "contrast", "brightness", "sharpness"):
        factor = 1.0 + _signed(0.9 * m, rng)
        adjust = {
            "color": TF.adjust_saturation,
            "contrast": TF.adjust_contrast,
            "brightness": TF.adjust_brightness,
            "sharpness": TF.adjust_sharpness,
        }[op]
        return adjust(clip, factor)
    if op in ("shear_x", "shear_y"):
        deg = float(np.degrees(np.arctan(_signed(0.3 * m, rng))))
        shear = [deg, 0.0] if op == "shear_x" else [0.0, deg]
        return TF.affine(
            clip, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
            interpolation=InterpolationMode.BILINEAR, fill=FILL, center=[0.0, 0.0],
        )  # fmt: skip
    if op in ("translate_x", "translate_y"):
        frac = _signed(0.45 * m, rng)
        shift = [round(frac * W), 0] if op == "translate_x" else [0, round(frac * H)]
        return TF.affine(
            clip, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR, fill=FILL,
        )  # fmt: skip
    raise ValueError(f"unknown RandAugment op {op!r}; choose from {list(OPS)}")


def rand_augment(
    clip: torch.Tensor,
    *,
    num_ops: int,
    magnitude: float,
    magnitude_std: float,
    rng: np.random.Generator,
) -> torch.Tensor:
    """RandAugment of one clip ``[T, C, H, W]``: uint8, or float holding 0..255 (the result
    keeps the dtype; float is rounded to uint8 steps first). ``num_ops`` 0 returns ``clip``."""
    if num_ops <= 0:
        return clip
    if clip.ndim != 4 or clip.shape[1] != 3:
        raise ValueError(f"expected a clip [T, 3, H, W], got {tuple(clip.shape)}")
    out = clip if clip.dtype == torch.uint8 else clip.round().clamp(0, 255).to(torch.uint8)
    for _ in range(num_ops):
        op = OPS[int(rng.integers(len(OPS)))]
        m = magnitude + (float(rng.normal(0.0, magnitude_std)) if magnitude_std > 0 else 0.0)
        m = min(max(m, 0.0), MAX_MAGNITUDE)
        if rng.random() < APPLY_PROB:
            out = apply_op(out, op, m, rng)
    return out if clip.dtype == torch.uint8 else out.to(clip.dtype)


def rand_augment_batch(
    video: torch.Tensor,
    *,
    num_ops: int,
    magnitude: float,
    magnitude_std: float,
    rng: np.random.Generator,
) -> torch.Tensor:
    """:func:`rand_augment` of every clip of a batch ``[B, C, T, H, W]`` (uint8 or float
    0..255), each clip its own draw, in batch order."""
    if num_ops <= 0:
        return video
    clips = [
        rand_augment(
            clip.permute(1, 0, 2, 3),  # [T, C, H, W]
            num_ops=num_ops, magnitude=magnitude, magnitude_std=magnitude_std, rng=rng,
        ).permute(1, 0, 2, 3)  # [C, T, H, W]
        for clip in video
    ]  # fmt: skip
    return torch.stack(clips)  # [B, C, T, H, W]
