"""Convert a RoPE (V-JEPA 2 style) encoder + predictor into a Hugging Face ``VJEPA2Model`` folder.

``transformers.VJEPA2Model`` computes exactly the V-JEPA 2 reference model: Conv3d tubelets, no
absolute position embedding, 3D RoPE on q and k with the reference's *tiled* frequency layout
(``omega`` of length s/2 repeated twice, rotation on adjacent pairs), exact GELU, LayerNorm eps
1e-6 and the frame/row/column split ``s = 2*floor(floor(hd/3)/2)`` channels per axis. Our RoPE
encoder uses the same convention, so the conversion is a pure renaming plus splitting ``qkv``
into ``query/key/value`` and stacking the predictor's ``mask_tokens.k`` into one parameter.

Differences to know about: the HF model takes ``pixel_values_videos`` as ``[B, T, C, H, W]``
(ours: ``[B, C, T, H, W]``), and its RoPE grid comes from ``crop_size``, so feed it clips of the
exported ``img_size``. Sin-cos (V-JEPA 1) encoders have no HF counterpart and are refused.
transformers is needed only to *load* the result, not to write it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

HF_CONFIG_FILE = "config.json"
HF_WEIGHTS_FILE = "model.safetensors"
_BLOCK = re.compile(r"^(blocks|predictor_blocks)\.(\d+)\.(.+)$")
_BLOCK_PREFIX = {"blocks": "encoder.layer", "predictor_blocks": "predictor.layer"}
_RENAMES = {
    "patch_embed.proj.weight": "encoder.embeddings.patch_embeddings.proj.weight",
    "patch_embed.proj.bias": "encoder.embeddings.patch_embeddings.proj.bias",
    "norm.weight": "encoder.layernorm.weight",
    "norm.bias": "encoder.layernorm.bias",
    "predictor_embed.weight": "predictor.embeddings.predictor_embeddings.weight",
    "predictor_embed.bias": "predictor.embeddings.predictor_embeddings.bias",
    "predictor_norm.weight": "predictor.layernorm.weight",
    "predictor_norm.bias": "predictor.layernorm.bias",
    "predictor_proj.weight": "predictor.proj.weight",
    "predictor_proj.bias": "predictor.proj.bias",
}


class HFConversionError(ValueError):
    """The model cannot be expressed as a transformers VJEPA2Model (the message says why)."""


def _block_entries(prefix: str, rest: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One block parameter -> HF name(s); qkv [3D, ...] splits into query / key / value."""
    if rest.startswith("attn.qkv."):
        kind = rest.rsplit(".", 1)[1]  # weight | bias
        q, k, v = tensor.chunk(3, dim=0)  # rows: q (0:D), k (D:2D), v (2D:3D)
        names = ("query", "key", "value")
        return {f"{prefix}.attention.{n}.{kind}": t.contiguous() for n, t in zip(names, (q, k, v))}
    if rest.startswith("attn.proj."):
        return {f"{prefix}.attention.proj.{rest.rsplit('.', 1)[1]}": tensor}
    return {f"{prefix}.{rest}": tensor}  # norm1, norm2, mlp.fc1, mlp.fc2 keep their names


def _rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    mask_tokens: dict[int, torch.Tensor] = {}
    for name, tensor in state.items():
        block = _BLOCK.match(name)
        if block:
            prefix = f"{_BLOCK_PREFIX[block.group(1)]}.{block.group(2)}"
            out.update(_block_entries(prefix, block.group(3), tensor))
        elif name.startswith("mask_tokens."):
            mask_tokens[int(name.split(".")[1])] = tensor  # [1, 1, Dp]
        elif name in _RENAMES:
            out[_RENAMES[name]] = tensor
        else:
            raise HFConversionError(f"no Hugging Face VJEPA2 counterpart for weight {name!r}")
    if mask_tokens:
        stacked = [mask_tokens[i] for i in range(len(mask_tokens))]
        out["predictor.embeddings.mask_tokens"] = torch.stack(stacked)  # [M, 1, 1, Dp]
    return out


def to_hf(
    encoder_state: dict[str, torch.Tensor],
    config: dict[str, Any],
    *,
    predictor_state: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Our encoder (and predictor) state + export config.json -> (HF state dict, HF config dict).

    ``config`` is an export ``config.json`` dict (``architecture``, optional ``predictor``).
    Without ``predictor_state`` the HF folder has encoder weights only: transformers then
    initialises its predictor randomly (encoder outputs are unaffected).
    """
    arch = config["architecture"]
    if arch["pos_embed"] != "rope":
        raise HFConversionError(
            f"Hugging Face VJEPA2Model has only 3D RoPE; this encoder uses {arch['pos_embed']!r} "
            "position embeddings (V-JEPA 1). Use model.safetensors, TorchScript or ONNX instead."
        )
    if any(k.startswith(("predictor", "mask_tokens")) for k in encoder_state):
        raise HFConversionError("encoder_state holds predictor weights: pass them separately")
    hf_state = _rename(encoder_state)
    pred = config.get("predictor")
    if predictor_state is not None:
        if pred is None:
            raise HFConversionError("predictor_state given but config has no predictor section")
        hf_state.update(_rename(predictor_state))
    return hf_state, _hf_config(arch, pred)


def _hf_config(arch: dict[str, Any], pred: dict[str, Any] | None) -> dict[str, Any]:
    hf = {
        "architectures": ["VJEPA2Model"],
        "model_type": "vjepa2",
        "patch_size": arch["patch_size"],
        "crop_size": arch["img_size"],
        "frames_per_clip": arch["num_frames"],
        "tubelet_size": arch["tubelet_size"],
        "hidden_size": arch["width"],
        "in_chans": 3,
        "num_attention_heads": arch["heads"],
        "num_hidden_layers": arch["depth"],
        "mlp_ratio": arch["mlp_ratio"],
        "layer_norm_eps": 1e-6,
        "qkv_bias": True,
        "hidden_act": "gelu",  # exact (erf) GELU, as the reference
        "drop_path_rate": 0.0,
        "torch_dtype": "float32",
    }
    if pred is not None:
        hf.update(
            {
                "pred_hidden_size": pred["width"],
                "pred_num_hidden_layers": pred["depth"],
                "pred_num_attention_heads": pred["heads"],
                "pred_num_mask_tokens": pred["num_mask_tokens"],
                "pred_mlp_ratio": pred["mlp_ratio"],
            }
        )
    return hf


def write_hf(
    out_dir: str | Path,
    encoder_state: dict[str, torch.Tensor],
    config: dict[str, Any],
    *,
    predictor_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a folder that ``transformers.VJEPA2Model.from_pretrained(out_dir)`` loads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state, hf_config = to_hf(encoder_state, config, predictor_state=predictor_state)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(out / HF_WEIGHTS_FILE),
        metadata={"format": "pt"},
    )
    (out / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
    return out


@torch.no_grad()
def hf_max_abs_diff(hf_dir: str | Path, encoder: torch.nn.Module, x: torch.Tensor) -> float:
    """Load ``hf_dir`` with transformers and compare its last_hidden_state to ``encoder(x)``.

    ``x`` is our layout ``[B, 3, T, H, W]``. Raises ImportError without transformers.
    """
    from transformers import VJEPA2Model

    model = VJEPA2Model.from_pretrained(str(hf_dir)).eval()
    hf_out = model(pixel_values_videos=x.permute(0, 2, 1, 3, 4), skip_predictor=True)
    ours = encoder(x)  # [B, N, D]
    return (hf_out.last_hidden_state - ours).abs().max().item()
