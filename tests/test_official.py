"""Official V-JEPA / V-JEPA 2 checkpoints: our modules reproduce the reference numerics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vjepa.artifacts.official import (
    CheckpointFormatError,
    build_from_official,
    load_state_strict,
    read_official,
    strip_prefixes,
)
from vjepa.jepa.losses import jepa_loss, normalize_targets
from vjepa.jepa.masks import apply_masks

REF = Path(__file__).parent / "fixtures" / "reference"
FIXTURES = ["jepa_tiny", "vjepa2_tiny"]
ATOL = 5e-6  # the README's tolerance for float32 CPU (kernels differ across CPUs by ~1e-6)


def _load(name: str):
    ckpt = read_official(REF / name / "checkpoint.pt")
    target, predictor = build_from_official(ckpt, num_heads=3, num_frames=4, img_size=64)
    context, _ = build_from_official(ckpt, num_heads=3, num_frames=4, img_size=64)
    load_state_strict(context, ckpt.encoder, "context encoder")
    return ckpt, target.eval(), context.eval(), predictor.eval()


@pytest.mark.parametrize("name", FIXTURES)
def test_reference_outputs(name: str) -> None:
    ckpt, target, context, predictor = _load(name)
    io = load_file(str(REF / name / "io.safetensors"))
    with torch.no_grad():
        enc_full = target(io["x"])
        tgt_feats = apply_masks(normalize_targets(enc_full), io["tgt_idx"])
        enc_ctx = context(io["x"], io["ctx_idx"])
        pred = predictor(enc_ctx, io["ctx_idx"], io["tgt_idx"], mask_index=0)
        loss = jepa_loss([pred], [tgt_feats])
    got = {"enc_full": enc_full, "enc_ctx": enc_ctx, "pred": pred, "tgt_feats": tgt_feats}
    for key, value in got.items():
        assert value.shape == io[key].shape, key
        torch.testing.assert_close(value, io[key], atol=ATOL, rtol=0, msg=key)
    torch.testing.assert_close(loss, io["loss"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", FIXTURES)
def test_inferred_architecture(name: str) -> None:
    ckpt, target, _, predictor = _load(name)
    arch = ckpt.arch
    assert (arch.width, arch.depth, arch.patch_size, arch.tubelet_size) == (96, 2, 16, 2)
    assert (arch.pred_width, arch.pred_depth, arch.num_mask_tokens) == (48, 2, 2)
    assert arch.mlp_ratio == 4.0 and arch.pred_mlp_ratio == 4.0
    assert ckpt.source_key == "target_encoder"
    if name == "jepa_tiny":
        assert ckpt.flavour == "jepa" and arch.pos_embed == "sincos" and arch.grid == (2, 4, 4)
        assert torch.equal(target.pos_embed, ckpt.target_encoder["pos_embed"])
    else:
        assert ckpt.flavour == "vjepa2" and arch.pos_embed == "rope" and arch.grid is None
        assert "pos_embed" not in target.state_dict()
    assert (target.num_frames, target.img_size, predictor.num_heads) == (4, 64, 3)


def test_target_and_context_weights_differ() -> None:
    # Guards against reading the online encoder where the EMA one is meant (README: ~2.5 apart).
    ckpt = read_official(REF / "vjepa2_tiny" / "checkpoint.pt")
    key = "blocks.0.attn.qkv.weight"
    assert (ckpt.target_encoder[key] - ckpt.encoder[key]).abs().max() > 0.1


def test_strict_load_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    raw = torch.load(REF / "jepa_tiny" / "checkpoint.pt", map_location="cpu", weights_only=True)
    state = dict(raw["target_encoder"])
    del state["module.backbone.blocks.1.norm2.bias"]
    state["module.backbone.blocks.0.attn.bogus"] = torch.zeros(1)
    raw["target_encoder"] = state
    torch.save(raw, tmp_path / "broken.pt")
    ckpt = read_official(tmp_path / "broken.pt")
    with pytest.raises(CheckpointFormatError) as err:
        build_from_official(ckpt, num_heads=3)
    assert "missing keys: blocks.1.norm2.bias" in str(err.value)
    assert "unexpected keys: blocks.0.attn.bogus" in str(err.value)


def test_strict_load_names_shape_mismatch() -> None:
    ckpt = read_official(REF / "jepa_tiny" / "checkpoint.pt")
    encoder, _ = build_from_official(ckpt, num_heads=3)
    state = dict(ckpt.target_encoder)
    state["norm.weight"] = torch.ones(5)
    with pytest.raises(CheckpointFormatError, match=r"norm\.weight \(checkpoint \(5,\)"):
        load_state_strict(encoder, state, "encoder")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_official(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointFormatError, match="junk.pt"):
        read_official(tmp_path / "junk.pt")
    torch.save({"opt": None}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointFormatError, match="no encoder state"):
        read_official(tmp_path / "empty.pt")


def test_strip_prefixes() -> None:
    state = {"module.backbone.norm.weight": 1, "backbone.a": 2, "b.module.c": 3}
    assert list(strip_prefixes(state)) == ["norm.weight", "a", "b.module.c"]


def test_bare_state_dict_file(tmp_path: Path) -> None:
    ckpt = read_official(REF / "vjepa2_tiny" / "checkpoint.pt")
    torch.save(ckpt.target_encoder, tmp_path / "bare.pt")
    bare = read_official(tmp_path / "bare.pt")
    assert bare.predictor is None and bare.source_key == "encoder"
    encoder, predictor = build_from_official(bare, num_heads=3)
    assert predictor is None and encoder.pos_embed_mode == "rope"
