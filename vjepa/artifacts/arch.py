"""Architectures: the constructor arguments of an encoder / predictor, read off a config, a
built module or the weights, and the modules built from them on the meta device.

The encoder's keys (ARCH_KEYS, OPTIONAL_ARCH, encoder_arch) live beside the encoder in
vjepa.models.encoder, which builds every encoder from them; they are re-exported here."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vjepa.artifacts.official import WeightsMismatchError
from vjepa.config import Config
from vjepa.models.encoder import (
    ARCH_KEYS,
    OPTIONAL_ARCH,
    SIZES,
    VisionTransformer,
    encoder_arch,
    model_arch,
    optional_arch,
    teacher_model,
)
from vjepa.models.predictor import Predictor

__all__ = [
    "ARCH_KEYS",
    "OPTIONAL_ARCH",
    "SIZES",
    "arch_from_config",
    "arch_of",
    "build_encoder_from_arch",
    "build_predictor_from_arch",
    "encoder_arch",
    "model_arch",
    "optional_arch",
    "predictor_arch_from_state",
    "vit_from_arch",
]


def arch_from_config(cfg: Config, which: str = "context") -> dict[str, Any]:
    """Encoder architecture of one of our runs (model size row + geometry of the clips); for
    ``which="target"`` with ``objective.teacher_input: diff``, its motion-only teacher's."""
    model = cfg.model
    objective = getattr(cfg, "objective", None)  # world-train and fine-tune runs have none
    if which == "target" and objective is not None:
        model = teacher_model(model, objective.teacher_input)
    return model_arch(model, num_frames=cfg.data.frames_per_clip, img_size=cfg.data.crop_size)


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
        **out_dim_of(state, int(embed_dim)),
        **({"rollout": True} if "rollout_embed.weight" in state else {}),
    }


def out_dim_of(state: dict[str, torch.Tensor], embed_dim: int) -> dict[str, int]:
    """``{"out_dim": n}`` when the predictor head emits another size than ``embed_dim`` (pixel
    targets, a teacher of another width), else nothing (the official layout)."""
    out = int(state["predictor_proj.weight"].shape[0])  # [out, Dp]
    return {"out_dim": out} if out != embed_dim else {}


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
        **optional_arch(
            frame_diff=encoder.frame_diff,
            stem=encoder.stem,
            rgb=encoder.rgb,
            centre_input=encoder.centre_input,
        ),
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
            out_dim=arch.get("out_dim"),
            rollout=arch.get("rollout", False),
        )
