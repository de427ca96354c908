"""Encoder, predictor and layers: shapes in every mode, position recipes, init, checkpointing."""

from __future__ import annotations

import math

import pytest
import torch

from vjepa.config import ConfigError, ModelConfig
from vjepa.models.encoder import SIZES, VisionTransformer, build_encoder
from vjepa.models.layers import (
    apply_rope,
    resample_pos_embed,
    rope_axis_dims,
    rope_cos_sin,
    sincos_pos_embed_3d,
    token_coords,
)
from vjepa.models.predictor import Predictor


def _vit(pos: str, **over) -> VisionTransformer:
    args = dict(img_size=32, num_frames=4, patch_size=8, tubelet_size=2, width=48, depth=2, heads=2)
    args.update(over)
    return VisionTransformer(pos_embed=pos, **args).eval()


def _pred(pos: str) -> Predictor:
    return Predictor(
        embed_dim=48, width=24, depth=2, heads=2, num_mask_tokens=2, img_size=32,
        num_frames=4, patch_size=8, tubelet_size=2, pos_embed=pos,
    ).eval()  # fmt: skip


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_encoder_shapes_masked_and_interpolated(pos: str) -> None:
    enc = _vit(pos)
    x = torch.randn(2, 3, 4, 32, 32)
    assert enc(x).shape == (2, 32, 48)  # grid (2, 4, 4)
    masks = torch.tensor([[0, 3, 5, 31], [1, 2, 8, 9]])
    out = enc(x, masks)
    assert out.shape == (2, 4, 48)
    # Another frame count and resolution: grid (4, 6, 5) (sincos resamples, rope re-derives).
    assert enc(torch.randn(1, 3, 8, 48, 40)).shape == (1, 120, 48)
    both = enc(x, [masks, masks[:, :2]])  # a list: one patch embedding, one pass per mask
    assert torch.equal(both[0], out) and torch.equal(both[1], enc(x, masks[:, :2]))
    with pytest.raises(ValueError, match="does not divide"):
        enc(torch.randn(1, 3, 3, 32, 32))


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_masked_forward_equals_attention_over_the_kept_tokens(pos: str) -> None:
    # Masking must gather AFTER adding positions and rotate with the kept tokens' positions:
    # a 1-block model's masked output equals a manual forward over the kept tokens only.
    enc = _vit(pos, depth=1)
    x = torch.randn(2, 3, 4, 32, 32)
    masks = torch.tensor([[0, 7, 20, 30], [4, 5, 6, 17]])
    with torch.no_grad():
        tokens = enc.patch_embed(x)
        if pos == "sincos":
            tokens = tokens + enc.pos_embed
        kept = torch.stack([tokens[b, masks[b]] for b in range(2)])
        rope = rope_cos_sin(masks, (4, 4), enc.head_dim) if pos == "rope" else None
        manual = enc.norm(enc.blocks[0](kept, rope))
        torch.testing.assert_close(enc(x, masks), manual, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_predictor_shapes_and_mask_token_choice(pos: str) -> None:
    pred = _pred(pos)
    with torch.no_grad():
        pred.mask_tokens[1].copy_(torch.randn(1, 1, 24))
    ctx = torch.randn(2, 5, 48)
    ctx_idx = torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])
    tgt_idx = torch.tensor([[20, 21, 30], [5, 6, 7]])
    out0 = pred(ctx, ctx_idx, tgt_idx, mask_index=0)
    out1 = pred(ctx, ctx_idx, tgt_idx, mask_index=1)
    assert out0.shape == (2, 3, 48)
    assert (out0 - out1).abs().max() > 1e-3
    assert torch.equal(pred(ctx, ctx_idx, tgt_idx, mask_index=2), out0)  # modulo the count


def test_rope_predictor_is_invariant_to_input_order() -> None:
    # V-JEPA 2 sorts tokens by position, so permuting the context rows changes nothing.
    pred = _pred("rope")
    ctx = torch.randn(1, 4, 48)
    ctx_idx = torch.tensor([[3, 9, 1, 20]])
    tgt_idx = torch.tensor([[2, 30]])
    perm = torch.tensor([2, 0, 3, 1])
    a = pred(ctx, ctx_idx, tgt_idx)
    b = pred(ctx[:, perm], ctx_idx[:, perm], tgt_idx)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_sincos_table_matches_the_recipe_by_hand() -> None:
    dim, grid = 20, (2, 3, 4)
    table = sincos_pos_embed_3d(grid, dim)
    assert table.shape == (24, 20) and table.dtype == torch.float32
    d = 2 * math.ceil(dim / 6)  # 8 per axis, 24 > 20: last 4 w columns dropped
    t, h, w = 1, 2, 3
    n = t * 12 + h * 4 + w
    freqs = [10000 ** (-j / (d / 2)) for j in range(d // 2)]
    row = []
    for q in (t, h, w):
        row += [math.sin(q * f) for f in freqs] + [math.cos(q * f) for f in freqs]
    torch.testing.assert_close(table[n], torch.tensor(row[:dim]), atol=1e-7, rtol=0)


def test_resample_pos_embed_identity_and_shape() -> None:
    table = sincos_pos_embed_3d((2, 4, 4), 12)[None]
    assert resample_pos_embed(table, (2, 4, 4), (2, 4, 4)) is table
    assert resample_pos_embed(table, (2, 4, 4), (4, 8, 6)).shape == (1, 192, 12)


def _rope_reference_style(x: torch.Tensor, ids: torch.Tensor, gw: int, gh: int) -> torch.Tensor:
    """Slice-by-slice rotation written from the README's description (tiled angles)."""
    hd = x.shape[-1]
    s = 2 * ((hd // 3) // 2)
    out = x.clone()
    for a, pos in enumerate(token_coords(ids, (gh, gw))):
        seg = x[..., a * s : (a + 1) * s]
        ang = pos.float()[:, None] * torch.tensor([10000 ** (-j / (s / 2)) for j in range(s // 2)])
        cos, sin = ang.cos().repeat(1, 2), ang.sin().repeat(1, 2)  # tiled: the quirk
        x1, x2 = seg[..., 0::2], seg[..., 1::2]
        rot = torch.stack((-x2, x1), dim=-1).flatten(-2)
        out[..., a * s : (a + 1) * s] = seg * cos + rot * sin
    return out


def test_rope_quirk_and_unrotated_channels() -> None:
    assert (rope_axis_dims(32), rope_axis_dims(16), rope_axis_dims(64)) == (10, 4, 20)
    x = torch.randn(1, 7, 2, 32)  # [B, K, H, hd]
    ids = torch.tensor([0, 5, 17, 18, 40, 63, 64])
    cos, sin = rope_cos_sin(ids, (4, 4), 32)  # [1, K, hd]
    got = apply_rope(x, cos[:, :, None], sin[:, :, None])
    expected = _rope_reference_style(x.transpose(1, 2), ids, 4, 4).transpose(1, 2)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert torch.equal(got[..., 30:], x[..., 30:])  # hd - 3s = 2 channels left alone
    assert torch.equal(got[:, 0], x[:, 0])  # position (0, 0, 0): identity


def test_init_matches_reference_statistics() -> None:
    enc = _vit("sincos", width=96, heads=3, depth=4)
    w = enc.blocks[0].mlp.fc1.weight.detach()
    assert abs(float(w.std()) - 0.02) < 2e-3 and float(w.abs().max()) < 0.1
    assert torch.equal(enc.blocks[0].attn.qkv.bias, torch.zeros(288))
    assert torch.equal(enc.norm.weight, torch.ones(96))
    ratio = (enc.blocks[3].attn.proj.weight.std() / enc.blocks[0].attn.proj.weight.std()).item()
    assert abs(float(ratio) - math.sqrt(2 / 8)) < 0.05  # 1/sqrt(2*(i+1)) depth rescaling
    again = _vit("sincos", width=96, heads=3, depth=4)  # default generator: seed 0
    assert torch.equal(enc.blocks[2].mlp.fc2.weight, again.blocks[2].mlp.fc2.weight)
    pred = _pred("sincos")
    assert all(torch.equal(t, torch.zeros(1, 1, 24)) for t in pred.mask_tokens)


def test_state_dict_keys_are_the_official_names() -> None:
    keys = list(_vit("sincos", depth=1).state_dict())
    assert keys[:3] == ["pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    assert "blocks.0.attn.qkv.weight" in keys and "blocks.0.mlp.fc2.bias" in keys
    assert keys[-2:] == ["norm.weight", "norm.bias"]
    assert "pos_embed" not in _vit("rope").state_dict()
    pkeys = list(_pred("sincos").state_dict())
    assert pkeys[:4] == ["mask_tokens.0", "mask_tokens.1", "predictor_pos_embed",
                         "predictor_embed.weight"] or "mask_tokens.0" in pkeys  # fmt: skip
    assert {"predictor_norm.weight", "predictor_proj.bias"} <= set(pkeys)
    assert "predictor_pos_embed" not in _pred("rope").state_dict()


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_activation_checkpointing_gives_the_same_gradients(pos: str) -> None:
    x = torch.randn(1, 3, 4, 32, 32)
    masks = torch.tensor([[1, 2, 3, 10, 11]])
    grads = []
    for ckpt in (False, True):
        enc = _vit(pos, activation_checkpointing=ckpt).train()
        enc(x, masks).square().mean().backward()
        grads.append(enc.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-7, rtol=1e-5)


def test_sizes_and_build_encoder() -> None:
    assert SIZES["giant"].heads == 16 and SIZES["giant_v2"].heads == 22
    assert int(SIZES["giant"].width * SIZES["giant"].mlp_ratio) == 6144
    for size in SIZES.values():
        assert size.width % size.heads == 0
    enc = build_encoder(ModelConfig(name="tiny_cpu", pos_embed="rope"), num_frames=8, img_size=64)
    assert (enc.embed_dim, len(enc.blocks), enc.num_heads) == (96, 4, 3)
    assert enc.pos_embed_mode == "rope" and enc.grid == (4, 4, 4)
    with pytest.raises(ConfigError, match="model.name"):
        build_encoder(ModelConfig(name="enormous"), num_frames=8, img_size=64)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_last_block_on_targets_only_equals_the_full_block(pos: str, checkpointing: bool) -> None:
    """The predictor's shortcut (last block for the target rows only) is the same function as
    every block on every token: outputs and all gradients, in float64 to 1e-10 (the shortcut
    only skips rows whose outputs are discarded) and in float32 within rounding."""
    g = torch.Generator().manual_seed(3)
    pred = _pred(pos).train()
    pred.activation_checkpointing = checkpointing
    with torch.no_grad():
        for p in pred.parameters():  # non-zero mask tokens, non-trivial norms and biases
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    B, Kc, Kt = 3, 5, 17  # 32 tokens; the targets are not a contiguous, sorted range
    perm = torch.stack([torch.randperm(32, generator=g) for _ in range(B)])  # [B, 32]
    ctx_idx, tgt_idx = perm[:, :Kc], perm[:, Kc : Kc + Kt]
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-5)):
        pred = pred.to(dtype)
        ctx = torch.randn(B, Kc, 48, generator=g, dtype=dtype)
        weight = torch.randn(B, Kt, 48, generator=g, dtype=dtype)  # a loss that reads every row
        results = []
        for fast in (True, False):
            pred.last_block_targets_only = fast
            pred.zero_grad(set_to_none=True)
            z = ctx.clone().requires_grad_(True)
            out = pred(z, ctx_idx, tgt_idx, mask_index=1)  # [B, Kt, 48]
            (out * weight).sum().backward()
            grads = [p.grad for p in pred.parameters() if p.grad is not None]
            results.append((out.detach(), z.grad, grads))
        (out_f, dz_f, g_f), (out_p, dz_p, g_p) = results
        assert out_f.shape == (B, Kt, 48) and len(g_f) == len(g_p) > 10
        scale = lambda t, tol=tol: tol * max(1.0, t.abs().max().item())  # noqa: E731
        assert (out_f - out_p).abs().max() <= scale(out_p)
        assert (dz_f - dz_p).abs().max() <= scale(dz_p)
        for a, b in zip(g_f, g_p):
            assert (a - b).abs().max() <= scale(b)
