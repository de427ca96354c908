"""Hugging Face VJEPA2 conversion: transformers computes the same features as our encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_export import FIXTURES, clip, make_run

from vjepa.artifacts.export import export, import_official
from vjepa.artifacts.hf import HFConversionError, to_hf


def test_to_hf_renames_and_splits_qkv(tmp_path):
    run, modules = make_run(tmp_path, "rope")
    state = modules["target"].state_dict()
    config = json.loads((export(run, tmp_path / "e") / "config.json").read_text())
    hf_state, hf_config = to_hf(state, config, predictor_state=modules["predictor"].state_dict())
    qkv = state["blocks.1.attn.qkv.weight"]  # [3D, D]
    assert torch.equal(hf_state["encoder.layer.1.attention.key.weight"], qkv[96:192])
    assert torch.equal(hf_state["encoder.layernorm.bias"], state["norm.bias"])
    assert hf_state["predictor.embeddings.mask_tokens"].shape == (2, 1, 1, 48)
    assert hf_config["crop_size"] == 64 and hf_config["pred_num_mask_tokens"] == 2
    assert hf_config["num_attention_heads"] == 3 and hf_config["pred_num_attention_heads"] == 3


def test_sincos_encoder_is_refused(tmp_path):
    run, _ = make_run(tmp_path, "sincos")
    with pytest.raises(HFConversionError, match="only 3D RoPE"):
        export(run, tmp_path / "e", formats=["hf"])


def _hf_model(folder: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.VJEPA2Model.from_pretrained(str(folder)).eval()


def test_hf_model_matches_our_encoder_and_predictor(tmp_path):
    run, modules = make_run(tmp_path, "rope")
    out = export(run, tmp_path / "e", formats=["hf"])
    model = _hf_model(out / "hf")
    x = clip(batch=2, seed=11)
    gen = torch.Generator().manual_seed(0)
    ctx_idx = torch.stack([torch.randperm(32, generator=gen)[:16].sort().values for _ in range(2)])
    tgt_idx = torch.stack(
        [torch.tensor(sorted(set(range(32)) - set(row.tolist()))[:12]) for row in ctx_idx]
    )
    with torch.no_grad():
        hf = model(x.permute(0, 2, 1, 3, 4), context_mask=[ctx_idx], target_mask=[tgt_idx])
        ours = modules["target"](x)  # [2, N, D]
        ctx = torch.gather(ours, 1, ctx_idx[..., None].expand(-1, -1, 96))  # [2, Kc, D]
        # transformers' predictor always uses mask token 1 (its default mask_index).
        pred = modules["predictor"](ctx, ctx_idx, tgt_idx, mask_index=1)  # [2, Kt, D]
    assert (hf.last_hidden_state - ours).abs().max().item() <= 1e-4
    assert (hf.predictor_output.last_hidden_state - pred).abs().max().item() <= 1e-4
    recorded = json.loads((out / "formats.json").read_text())["hf"]
    assert recorded["with_predictor"] and recorded["max_abs_diff"] <= 1e-4


def test_official_vjepa2_fixture_through_hf(tmp_path):
    ckpt = FIXTURES / "vjepa2_tiny" / "checkpoint.pt"
    io = load_file(str(FIXTURES / "vjepa2_tiny" / "io.safetensors"))
    # V-JEPA 2 files do not store their clip size; HF's RoPE grid comes from crop_size.
    imported = import_official(ckpt, tmp_path / "imp", num_heads=3, num_frames=4, img_size=64)
    out = export(imported, tmp_path / "e", formats=["hf"])
    model = _hf_model(out / "hf")
    with torch.no_grad():
        hf = model(io["x"].permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
    assert (hf - io["enc_full"]).abs().max().item() <= 1e-4
