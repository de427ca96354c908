"""The video ViT encoder (context and target encoder of V-JEPA, and the frozen backbone).

State-dict keys equal the official bare names (``patch_embed.proj``, ``blocks.{i}.*``,
``norm``, and ``pos_embed`` for sin-cos models), so an official checkpoint loads by a prefix
strip and a strict load (see vjepa.artifacts.official).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from vjepa.config import ConfigError, ModelConfig
from vjepa.jepa.masks import apply_masks
from vjepa.models.layers import (
    LN_EPS,
    Block,
    Grid,
    PatchEmbed3D,
    init_weights,
    resample_pos_embed,
    rescale_blocks,
    rope_cos_sin,
    run_blocks,
    sincos_pos_embed_3d,
)
from vjepa.models.stem import ConvStem

PosEmbed = Literal["sincos", "rope"]
Stem = Literal["linear", "conv"]


@dataclass(frozen=True)
class ViTSize:
    """One encoder size: a row of :data:`SIZES`."""

    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0


SIZES: dict[str, ViTSize] = {
    "tiny_cpu": ViTSize(96, 4, 3),  # trains in minutes on a 2-core CPU on 8x64x64 clips
    "tiny": ViTSize(192, 12, 3),
    "small": ViTSize(384, 12, 6),
    "base": ViTSize(768, 12, 12),
    "large": ViTSize(1024, 24, 16),
    "huge": ViTSize(1280, 32, 16),
    "giant": ViTSize(1408, 40, 16, 48 / 11),  # V-JEPA ViT-g
    "giant_v2": ViTSize(1408, 40, 22, 48 / 11),  # V-JEPA 2 ViT-g ("vit_giant_xformers")
    "gigantic": ViTSize(1664, 48, 16, 64 / 13),
    "gigantic_v2": ViTSize(1664, 48, 26, 64 / 13),
}


def token_grid(num_frames: int, height: int, width: int, patch: int, tubelet: int) -> Grid:
    """The (t, h, w) token grid of a clip; a size that does not divide is a ValueError."""
    if num_frames % tubelet or height % patch or width % patch:
        raise ValueError(
            f"clip of {num_frames} frames x {height}x{width} px does not divide into "
            f"tubelets of {tubelet} frames x {patch}x{patch} px"
        )
    return num_frames // tubelet, height // patch, width // patch


class VisionTransformer(nn.Module):
    """Video ViT: ``forward(x [B,3,T,H,W], masks Long [B,K] | None) -> [B, N or K, D]``.

    ``pos_embed="sincos"``: the fixed table (a persistent buffer ``pos_embed`` [1,N,D]) is
    added before masking and resampled trilinearly for other clip sizes.
    ``pos_embed="rope"``: 3D RoPE in every block at the tokens' true positions.
    ``frame_diff=True``: each frame's difference to the previous one (zero for the first) is
    stacked onto its RGB channels before the patch embedding (6 input channels), so motion
    is a linear function of the input: :func:`with_frame_diff`. ``rgb=False`` (with
    ``frame_diff``) drops the RGB channels: the differences only (3 channels), so a still
    background is zero input. ``centre_input=True``: each pixel's mean over the clip's
    (visible) frames is subtracted from its RGB values before anything else
    (:func:`centre_frames`), so a still background is zero input while what moves keeps its
    colour and shape.
    """

    def __init__(
        self,
        *,
        img_size: int,
        num_frames: int,
        patch_size: int,
        tubelet_size: int,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        pos_embed: PosEmbed = "sincos",
        frame_diff: bool = False,
        stem: Stem = "linear",
        rgb: bool = True,
        centre_input: bool = False,
        activation_checkpointing: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if pos_embed not in ("sincos", "rope"):
            raise ValueError(f"pos_embed must be 'sincos' or 'rope', got {pos_embed!r}")
        self.img_size = img_size
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.embed_dim = width
        self.num_heads = heads
        self.mlp_ratio = mlp_ratio
        self.pos_embed_mode: PosEmbed = pos_embed
        self.frame_diff = bool(frame_diff)
        self.rgb = bool(rgb)
        self.centre_input = bool(centre_input)
        if not (self.rgb or self.frame_diff):
            raise ValueError("rgb=False needs frame_diff=True: the input would have no channels")
        if stem not in ("linear", "conv"):
            raise ValueError(f"stem must be 'linear' or 'conv', got {stem!r}")
        self.stem: Stem = stem
        self.activation_checkpointing = activation_checkpointing
        self.grid = token_grid(num_frames, img_size, img_size, patch_size, tubelet_size)

        embed = PatchEmbed3D if stem == "linear" else ConvStem
        self.patch_embed = embed(
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            embed_dim=width,
            in_chans=3 * (self.rgb + self.frame_diff),
        )
        if pos_embed == "sincos":
            # A buffer, not a parameter: fixed, never optimised, but saved so official values load.
            self.register_buffer("pos_embed", sincos_pos_embed_3d(self.grid, width)[None])
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Reference init: trunc-normal 0.02, then depth rescaling (seed 0 when no generator)."""
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        init_weights(self, generator)
        rescale_blocks(self.blocks)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def forward(
        self, x: Tensor, masks: Tensor | list[Tensor] | None = None
    ) -> Tensor | list[Tensor]:
        """Tokens of clip ``x`` [B,3,T,H,W]: all [B,N,D], or the kept ones [B,K,D] per mask.

        ``masks`` may be a list (one Long [B,K_i] per mask generator): the clip is then patch
        embedded once and the blocks run once per mask; the result is a list. With a conv stem,
        frame differences or centred input, whose inputs reach across token borders, each mask instead
        embeds the clip with its hidden pixels zeroed (:meth:`_embed`), so no kept token sees
        a hidden one.
        """
        _, _, T, H, W = x.shape
        grid = token_grid(T, H, W, self.patch_size, self.tubelet_size)
        many = isinstance(masks, (list, tuple))
        if masks is not None and (self.frame_diff or self.centre_input or self.stem == "conv"):
            out = [
                self._blocks(self._embed(x, grid, m), m, grid) for m in (masks if many else [masks])
            ]
            return out if many else out[0]
        x = self._embed(x, grid, None)  # [B, N, D]
        if many:
            return [self._blocks(apply_masks(x, m), m, grid) for m in masks]  # [B, K_i, D] each
        if masks is not None:
            x = apply_masks(x, masks)  # [B, K, D]: gathered after positions are added
        return self._blocks(x, masks, grid)

    def _embed(self, x: Tensor, grid: Grid, keep: Tensor | None) -> Tensor:
        """Patch-embedded tokens with positions: all ``[B, N, D]``, or with ``keep`` [B, K]
        (token indices) the kept ``[B, K, D]`` of the clip whose other pixels are zeroed."""
        hidden = None
        if keep is not None:
            B, N = x.shape[0], grid[0] * grid[1] * grid[2]
            on = torch.zeros(B, N, dtype=x.dtype, device=x.device).scatter_(1, keep, 1.0)
            on = on.view(B, 1, *grid)
            for dim, size in ((2, self.tubelet_size), (3, self.patch_size), (4, self.patch_size)):
                on = on.repeat_interleave(size, dim=dim)  # [B, 1, T, H, W]
            x, hidden = x * on, on
        if self.centre_input:
            x = centre_frames(x, hidden)
        if self.frame_diff:
            x = with_frame_diff(x, hidden)  # [B, 6, T, H, W]
            if not self.rgb:
                x = x[:, x.shape[1] // 2 :]  # the differences only [B, 3, T, H, W]
        x = self.patch_embed(x)  # [B, N, D]
        if self.pos_embed_mode == "sincos":
            x = x + resample_pos_embed(self.pos_embed, self.grid, grid)  # [B, N, D]
        return x if keep is None else apply_masks(x, keep)

    def _blocks(self, x: Tensor, ids: Tensor | None, grid: Grid) -> Tensor:
        rope = None
        if self.pos_embed_mode == "rope":
            ids = ids if ids is not None else torch.arange(x.shape[1], device=x.device)
            rope = rope_cos_sin(ids, grid[1:], self.head_dim)
        x = run_blocks(self.blocks, x, rope, self.activation_checkpointing)  # [B, N|K, D]
        return self.norm(x)


def with_frame_diff(x: Tensor, on: Tensor | None = None) -> Tensor:
    """``[B, C, T, H, W]`` -> ``[B, 2C, T, H, W]``: the frames and their backward differences
    ``x[t] - x[t-1]`` (zeros at ``t = 0``). Only earlier frames enter a frame's difference, so a
    context made of the first time steps never sees the future. ``on`` [B, 1, T, H, W] (1 =
    visible): a difference is kept only where both of its frames are visible."""
    diff = torch.zeros_like(x)
    diff[:, :, 1:] = x[:, :, 1:] - x[:, :, :-1]
    if on is not None:
        diff[:, :, 1:] *= on[:, :, 1:] * on[:, :, :-1]
    return torch.cat([x, diff], dim=1)


def centre_frames(x: Tensor, on: Tensor | None = None) -> Tensor:
    """``[B, C, T, H, W]`` minus each pixel's mean over time: a still background becomes 0.
    ``on`` [B, 1, T, H, W] (1 = visible): the mean is over the pixel's visible frames only and
    hidden pixels stay 0, so a context never sees, through the mean, a frame it is not shown."""
    if on is None:
        return x - x.mean(dim=2, keepdim=True)
    mean = (x * on).sum(dim=2, keepdim=True) / on.sum(dim=2, keepdim=True).clamp(min=1.0)
    return (x - mean) * on


ARCH_KEYS = (
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "patch_size",
    "tubelet_size",
    "num_frames",
    "img_size",
    "pos_embed",
)
"""The keys of config.json ``architecture``: exactly the VisionTransformer constructor arguments."""
OPTIONAL_ARCH = {"frame_diff": False, "stem": "linear", "rgb": True, "centre_input": False}
"""Architecture keys added later, with the value that every older config.json meant."""
MODEL_ARCH_KEYS = ("name", "patch_size", "tubelet_size", "pos_embed", *OPTIONAL_ARCH)
"""The ``model.*`` config keys that make the encoder's architecture (with the clip geometry):
whatever builds an encoder from a config, or a random floor that must match one, reads these."""


def encoder_arch(
    name: str,
    *,
    patch_size: int,
    tubelet_size: int,
    num_frames: int,
    img_size: int,
    pos_embed: str,
    frame_diff: bool = False,
    stem: str = "linear",
    rgb: bool = True,
    centre_input: bool = False,
) -> dict[str, Any]:
    """The ARCH_KEYS of model size ``name`` (a row of SIZES) for clips of this geometry, plus
    the OPTIONAL_ARCH keys that differ from their default."""
    size = SIZES[name]
    return {
        "width": size.width,
        "depth": size.depth,
        "heads": size.heads,
        "mlp_ratio": float(size.mlp_ratio),
        "patch_size": patch_size,
        "tubelet_size": tubelet_size,
        "num_frames": num_frames,
        "img_size": img_size,
        "pos_embed": pos_embed,
        **optional_arch(frame_diff=frame_diff, stem=stem, rgb=rgb, centre_input=centre_input),
    }


def optional_arch(**values: Any) -> dict[str, Any]:
    """The OPTIONAL_ARCH ``values`` that differ from their default (older files lack them)."""
    return {k: v for k, v in values.items() if v != OPTIONAL_ARCH[k]}


def model_arch(
    model_cfg: ModelConfig, *, num_frames: int, img_size: int, name: str | None = None
) -> dict[str, Any]:
    """The ARCH_KEYS of ``model.*`` (size ``name``, else ``model_cfg.name``) for these clips."""
    name = name or model_cfg.name
    keys = {k: getattr(model_cfg, k) for k in MODEL_ARCH_KEYS if k != "name"}
    if name not in SIZES:
        raise ConfigError(
            f"model.name {name!r} is not a known size; choose one of {', '.join(SIZES)}"
        )
    return encoder_arch(name, num_frames=num_frames, img_size=img_size, **keys)


def teacher_model(model_cfg: ModelConfig, teacher_input: str) -> ModelConfig:
    """The ``model.*`` of a run's teacher: the student's own, or with ``objective.teacher_input``
    diff the same size seeing only the frame differences (``frame_diff`` on, ``rgb`` off)."""
    if teacher_input == "diff":
        return dataclasses.replace(model_cfg, frame_diff=True, rgb=False)
    return model_cfg


def build_encoder(
    model_cfg: ModelConfig,
    *,
    num_frames: int,
    img_size: int,
    generator: torch.Generator | None = None,
) -> VisionTransformer:
    """The encoder of size ``model_cfg.name`` for clips of ``num_frames`` x ``img_size``^2."""
    return VisionTransformer(
        **model_arch(model_cfg, num_frames=num_frames, img_size=img_size),
        activation_checkpointing=model_cfg.activation_checkpointing,
        generator=generator,
    )
