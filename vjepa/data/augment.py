"""Clip augmentation: uint8 frames ``[T, H, W, C]`` -> network input ``[C, T, H, W]``.

Training draws ONE random-resized-crop box and ONE flip decision per clip and applies them to
every frame (a per-frame crop would add fake motion). For speed the crop is taken on the uint8
frames before resizing, all T frames are resized in one ``interpolate`` call on uint8 channels-
last data (PyTorch's fast antialiased uint8 kernel, ~5x faster than float), and normalisation
is the last step (or is left to the accelerator: ``normalize=False`` returns uint8).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def imagenet_normalization() -> dict[str, list[float]]:
    """The normalisation every encoder of this project takes (config.json ``normalization``)."""
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def normalize(
    x: torch.Tensor,
    *,
    mean: tuple[float, ...] | list[float] = IMAGENET_MEAN,
    std: tuple[float, ...] | list[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Normalise pixels on the 0..255 scale (default ImageNet), ``[..., C, T, H, W]`` -> float32.

    Takes uint8 or float tensors (float holding 0..255, e.g. ``x.float()``) on any device.
    """
    shape = (3, 1, 1, 1)  # broadcast over [T, H, W]
    mean_px = torch.tensor(mean, device=x.device).view(shape) * 255.0
    inv_std = 1.0 / (torch.tensor(std, device=x.device).view(shape) * 255.0)
    return (x.float() - mean_px) * inv_std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalize` (ImageNet): float ``[..., C, T, H, W]`` -> 0..255 float."""
    shape = (3, 1, 1, 1)
    mean_px = torch.tensor(IMAGENET_MEAN, device=x.device).view(shape) * 255.0
    std_px = torch.tensor(IMAGENET_STD, device=x.device).view(shape) * 255.0
    return x.float() * std_px + mean_px


def normalize_(x: torch.Tensor) -> torch.Tensor:
    """In-place :func:`normalize` of a float tensor holding 0..255 pixels, ``[..., C, T, H, W]``.

    The loader uses it on a whole batch in shared memory: no temporaries, no extra copy.
    """
    shape = (3, 1, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(shape) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD, device=x.device).view(shape) * 255.0)
    return x.sub_(mean).mul_(inv_std)


def random_resized_box(
    height: int,
    width: int,
    *,
    scale: tuple[float, float],
    aspect: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop covering ``scale`` of the area (torchvision's rule).

    Ten tries at a box with area fraction in ``scale`` and log-uniform aspect ``w/h`` in
    ``aspect``; if none fits, the largest centred box with an aspect inside the range.
    """
    area = height * width
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(10):
        u = torch.rand(4, generator=generator).tolist()
        target_area = area * (scale[0] + u[0] * (scale[1] - scale[0]))
        ratio = math.exp(log_lo + u[1] * (log_hi - log_lo))
        w = round(math.sqrt(target_area * ratio))
        h = round(math.sqrt(target_area / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = min(int(u[2] * (height - h + 1)), height - h)
            left = min(int(u[3] * (width - w + 1)), width - w)
            return top, left, h, w
    ratio = width / height
    if ratio < aspect[0]:
        w, h = width, round(width / aspect[0])
    elif ratio > aspect[1]:
        h, w = height, round(height * aspect[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def drift_offsets(
    num: int,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    drift: float,
    generator: torch.Generator,
) -> tuple[list[int], list[int]]:
    """Per-frame ``(tops, lefts)`` of a ``box`` that moves at one random velocity.

    The speed is uniform in ``[0, drift]`` source pixels per frame in a uniform direction; the
    path is scaled down to fit inside the frame and placed so the middle frame stays near the
    box's own position (the box's sampled place), clamped to the frame.
    """
    height, width = size
    top, left, h, w = box
    u = torch.rand(2, generator=generator).tolist()
    speed, angle = drift * u[0], 2 * math.pi * u[1]
    span = max(num - 1, 1)
    vy, vx = speed * math.sin(angle), speed * math.cos(angle)
    # the whole path must fit: shrink the velocity per axis to the room the box leaves
    vy = math.copysign(min(abs(vy), (height - h) / span), vy)
    vx = math.copysign(min(abs(vx), (width - w) / span), vx)
    mid = (num - 1) / 2
    y0 = min(max(top - vy * mid, max(0.0, -vy * span)), (height - h) - max(0.0, vy * span))
    x0 = min(max(left - vx * mid, max(0.0, -vx * span)), (width - w) - max(0.0, vx * span))
    tops = [min(max(round(y0 + vy * i), 0), height - h) for i in range(num)]
    lefts = [min(max(round(x0 + vx * i), 0), width - w) for i in range(num)]
    return tops, lefts


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``[T, C, H, W]`` (channels-last strides) -> uint8 ``[T, C, h, w]``, bilinear + antialias."""
    if tuple(frames.shape[-2:]) == size:
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[T, H, W, C]`` numpy -> ``[T, C, H, W]`` view with channels-last strides (no copy)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def _finish(clip: torch.Tensor, normalize_out: bool) -> torch.Tensor:
    """``[T, C, H, W]`` uint8 -> ``[C, T, H, W]`` (float normalised, or a uint8 view).

    The uint8 result stays a strided view (no copy): the loader copies it straight into the
    batch tensor, which is where the layout change happens anyway.
    """
    clip = clip.permute(1, 0, 2, 3)  # [C, T, H, W]
    return normalize(clip) if normalize_out else clip


def train_transform(
    frames: np.ndarray,
    *,
    crop_size: int,
    scale: tuple[float, float] = (0.3, 1.0),
    aspect: tuple[float, float] = (0.75, 1.35),
    hflip: bool = True,
    drift: float = 0.0,
    generator: torch.Generator,
    normalize: bool = True,
) -> torch.Tensor:
    """One random-resized crop and one flip for the whole clip: ``[T,H,W,C]`` -> ``[C,T,S,S]``.

    ``drift > 0`` moves the crop window at a constant random velocity of up to ``drift`` source
    pixels per clip frame (a simulated camera pan, see :func:`drift_offsets`), so a static
    background is no longer static in the clip. Float32 ImageNet-normalised output, or uint8
    when ``normalize`` is False.
    """
    num, height, width, _ = frames.shape
    top, left, h, w = random_resized_box(
        height, width, scale=scale, aspect=aspect, generator=generator
    )
    flip = hflip and bool(torch.rand(1, generator=generator).item() < 0.5)
    # Crop the uint8 frames first: resizing only the crop is the cheap order.
    if drift > 0:
        dy, dx = drift_offsets(num, (height, width), (top, left, h, w), drift, generator)
        crop = _to_tensor(
            np.stack([f[y : y + h, x : x + w] for f, y, x in zip(frames, dy, dx, strict=True)])
        )  # [T, C, h, w]: the window moves frame by frame
    else:
        crop = _to_tensor(frames[:, top : top + h, left : left + w])  # [T, C, h, w]
    clip = _resize(crop, (crop_size, crop_size))  # [T, C, S, S]
    if flip:
        clip = clip.flip(-1)
    return _finish(clip, normalize)


def _short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    if height <= width:
        return short, max(short, round(width * short / height))
    return max(short, round(height * short / width)), short


def eval_transform(
    frames: np.ndarray,
    *,
    crop_size: int,
    num_crops: Literal[1, 3] = 1,
    normalize: bool = True,
) -> torch.Tensor:
    """Short side to ``crop_size``, then a centre crop or 3 crops along the long side.

    ``[T, H, W, C]`` uint8 -> ``[num_crops, C, T, S, S]`` (float normalised, or uint8). The 3
    crops are start / centre / end of the long side (left, centre, right for landscape video).
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    _, height, width, _ = frames.shape
    new_h, new_w = _short_side_size(height, width, crop_size)
    clip = _resize(_to_tensor(frames), (new_h, new_w))  # [T, C, H', W']
    long_extra = max(new_h, new_w) - crop_size
    offsets = [long_extra // 2] if num_crops == 1 else [0, long_extra // 2, long_extra]
    crops = []
    for off in offsets:
        if new_w >= new_h:  # landscape: slide along the width
            crop = clip[..., :crop_size, off : off + crop_size]
        else:
            crop = clip[..., off : off + crop_size, :crop_size]
        crops.append(_finish(crop, normalize))  # [C, T, S, S]
    return torch.stack(crops)  # [V, C, T, S, S]
