"""Architectures: the constructor arguments of an encoder / predictor, read off a config, a
built module or the weights, and the modules built from them on the meta device."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vjepa.artifacts.official import WeightsMismatchError
from vjepa.config import Config
from vjepa.models.encoder import SIZES, VisionTransformer
from vjepa.models.predictor import Predictor

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
OPTIONAL_ARCH = {"frame_diff": False, "stem": "linear"}
"""Architecture keys added later, with the value that every older config.json meant."""


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
        **optional_arch(frame_diff=frame_diff, stem=stem),
    }


def optional_arch(**values: Any) -> dict[str, Any]:
    """The OPTIONAL_ARCH ``values`` that differ from their default (older files lack them)."""
    return {k: v for k, v in values.items() if v != OPTIONAL_ARCH[k]}


def arch_from_config(cfg: Config) -> dict[str, Any]:
    """Encoder architecture of one of our runs (model size row + geometry of the clips)."""
    m = cfg.model
    return encoder_arch(
        m.name,
        patch_size=m.patch_size,
        tubelet_size=m.tubelet_size,
        num_frames=cfg.data.frames_per_clip,
        img_size=cfg.data.crop_size,
        pos_embed=m.pos_embed,
        frame_diff=m.frame_diff,
        stem=m.stem,
    )


def predictor_arch_from_state(
    state: dict[str, torch.Tensor], *, heads: int, encoder: dict[str, Any]
) -> dict[str, Any]:
    """Predictor architecture: sizes read off the weights, heads and geometry given."""
    width, embed_dim = state["predictor_embed.weight"].shape  # [Dp, D]
    depth = len({k.split(".")[1] for k in state if k.startswith("predictor_blocks.")})
    hidden = state["predictor_blocks.0.mlp.fc1.weight"].shape[0]  # [Dp * mlp_ratio, Dp]
    return {
        "embed_dim": int(embed_dim),
        "width": int(width),
        "depth": depth,
        "heads": heads,
        "mlp_ratio": hidden / width,
        "num_mask_tokens": sum(k.startswith("mask_tokens.") for k in state),
        **{k: encoder[k] for k in ("patch_size", "tubelet_size", "num_frames", "img_size")},
        "pos_embed": encoder["pos_embed"],
    }


def arch_of(encoder: nn.Module) -> dict[str, Any]:
    """The ARCH_KEYS of a built VisionTransformer."""
    return {
        "width": encoder.embed_dim,
        "depth": len(encoder.blocks),
        "heads": encoder.num_heads,
        "mlp_ratio": float(encoder.mlp_ratio),
        "patch_size": encoder.patch_size,
        "tubelet_size": encoder.tubelet_size,
        "num_frames": encoder.num_frames,
        "img_size": encoder.img_size,
        "pos_embed": encoder.pos_embed_mode,
        **optional_arch(frame_diff=encoder.frame_diff, stem=encoder.stem),
    }


def vit_from_arch(
    arch: dict[str, Any], generator: torch.Generator | None = None
) -> VisionTransformer:
    """A VisionTransformer of architecture ``arch`` (ARCH_KEYS), initialised from ``generator``."""
    missing = [k for k in ARCH_KEYS if k not in arch]
    if missing:
        raise WeightsMismatchError(f"architecture lacks {', '.join(missing)}")
    extra = {k: arch.get(k, default) for k, default in OPTIONAL_ARCH.items()}
    return VisionTransformer(**{k: arch[k] for k in ARCH_KEYS}, **extra, generator=generator)


def build_encoder_from_arch(arch: dict[str, Any]) -> nn.Module:
    """A VisionTransformer with the architecture of config.json, on the meta device.

    Meta: no memory and no random init (9 s for a ViT-L on 2 cores); :func:`load_strict`
    then assigns the loaded tensors.
    """
    with torch.device("meta"):
        return vit_from_arch(arch)


def build_predictor_from_arch(arch: dict[str, Any]) -> nn.Module:
    """A Predictor with the architecture of a config.json ``predictor`` section (meta device)."""
    with torch.device("meta"):
        return Predictor(
            embed_dim=arch["embed_dim"],
            width=arch["width"],
            depth=arch["depth"],
            heads=arch["heads"],
            mlp_ratio=arch["mlp_ratio"],
            num_mask_tokens=arch["num_mask_tokens"],
            img_size=arch["img_size"],
            num_frames=arch["num_frames"],
            patch_size=arch["patch_size"],
            tubelet_size=arch["tubelet_size"],
            pos_embed=arch["pos_embed"],
        )
