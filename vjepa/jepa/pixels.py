"""Pixel regression targets (VideoMAE-style): each tubelet's pixels, or its frame differences.

``objective.target_features: pixels | diff_pixels`` (issue 27, the "cheap pixel-trained
teacher" stage 1): the predictor regresses the masked tubelets' own pixels instead of a
teacher's features, through the same masked prediction path.
"""

from __future__ import annotations

from torch import Tensor

from vjepa.models.encoder import with_frame_diff

PIXEL_TARGETS = ("pixels", "diff_pixels")


def tubelet_pixels(video: Tensor, patch: int, tubelet: int) -> Tensor:
    """``video`` [B, C, T, H, W] -> [B, N, C * tubelet * patch * patch]: each token's pixels.

    Tokens in (t, h, w) order, the order of the encoder's patch embedding; within a token the
    values are in (c, t, y, x) order.
    """
    b, c, t, h, w = video.shape
    if t % tubelet or h % patch or w % patch:
        raise ValueError(
            f"clip {t}x{h}x{w} does not split into tubelets of {tubelet}x{patch}x{patch}"
        )
    x = video.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # [B, T', H', W', C, tubelet, patch, patch]
    return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), -1)


def norm_pixels(x: Tensor, eps: float = 1e-6) -> Tensor:
    """VideoMAE's ``norm_pix_loss``: each token's values minus their mean, over their std
    (unbiased) + ``eps``. ``x`` [B, N, P]."""
    mean = x.mean(dim=-1, keepdim=True)
    std = x.var(dim=-1, unbiased=True, keepdim=True).sqrt()
    return (x - mean) / (std + eps)


def pixel_targets(video: Tensor, patch: int, tubelet: int, kind: str) -> Tensor:
    """Regression targets [B, N, P] of ``video`` [B, C, T, H, W] (the normalised clip).

    ``pixels``: each tubelet's pixels, normalised per token (:func:`norm_pixels`).
    ``diff_pixels``: each tubelet's backward frame differences, NOT normalised per token: a
    static background gives exactly 0, and the small codec noise of a still region (decoded
    mp4: ~17 % of pixels change by a few levels between frames) stays small instead of being
    blown up to unit variance.
    """
    if kind == "pixels":
        return norm_pixels(tubelet_pixels(video, patch, tubelet))
    if kind == "diff_pixels":
        diff = with_frame_diff(video)[:, video.shape[1] :]  # [B, C, T, H, W], 0 at t = 0
        return tubelet_pixels(diff, patch, tubelet)
    raise ValueError(f"pixel target kind must be one of {PIXEL_TARGETS}, got {kind!r}")


def pixel_dim(channels: int, patch: int, tubelet: int) -> int:
    """Values per token of :func:`tubelet_pixels`: what the predictor's head emits."""
    return channels * tubelet * patch * patch
