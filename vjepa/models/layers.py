"""Transformer building blocks shared by the encoder and the predictor.

Everything here follows the reference V-JEPA (facebookresearch/jepa) and V-JEPA 2
(facebookresearch/vjepa2) computation op for op, so official checkpoints load by a prefix
strip and give the same features. What is measured (tests/test_official.py, float32 on the
CPU, the tiny fixtures of tests/fixtures/reference): every output tensor (full encoder pass,
context pass, normalised targets, predictor output) within 5e-6 max absolute difference of the
reference code's, and the loss within 1e-6. Not bit for bit: matmul / SDPA kernels round
differently across CPUs and libraries by about 1e-6.

Token order everywhere: the flat index ``n = t*(gh*gw) + h*gw + w`` of the Conv3d output
flattened in (t, h, w) order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

Rope = tuple[Tensor, Tensor] | None  # the (cos, sin) tables of 3D RoPE, [B|1, N, hd] each

LN_EPS = 1e-6  # every model LayerNorm (the target normalisation uses torch's 1e-5, see losses)
ROPE_BASE = 10000.0

Grid = tuple[int, int, int]  # token grid (t, h, w), t counted in tubelets

# ----------------------------------------------------------------------------------------
# Patch embedding and fixed 3D sin-cos positions
# ----------------------------------------------------------------------------------------


class PatchEmbed3D(nn.Module):
    """Non-overlapping tubelets -> tokens: Conv3d with kernel = stride = (t, p, p)."""

    def __init__(self, *, patch_size: int, tubelet_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)  # [B, D, t, h, w]
        return x.flatten(2).transpose(1, 2)  # [B, N, D]


def _sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """[M] float64 positions -> [M, dim] as [sin(pos*w_j), cos(pos*w_j)], w_j = 10000^(-j/(dim/2))."""
    omega = torch.arange(dim // 2, dtype=torch.float64)
    omega /= dim / 2.0
    omega = 1.0 / ROPE_BASE**omega  # [dim/2]
    out = pos[:, None] * omega[None, :]  # [M, dim/2]
    return torch.cat([out.sin(), out.cos()], dim=1)  # [M, dim]


def sincos_pos_embed_3d(grid: Grid, dim: int) -> Tensor:
    """The reference "uniform power" 3D sin-cos table, [N, dim] float32 (computed in float64).

    Each axis gets ``d = 2*ceil(dim/6)`` channels in the order [t, h, w]; the concatenation is
    cut to ``dim`` columns (dropping trailing w-axis columns when 3d > dim).
    """
    gt, gh, gw = grid
    d = 2 * math.ceil(dim / 6)
    t, h, w = torch.meshgrid(
        torch.arange(gt, dtype=torch.float64),
        torch.arange(gh, dtype=torch.float64),
        torch.arange(gw, dtype=torch.float64),
        indexing="ij",
    )  # each [gt, gh, gw]
    emb = [_sincos_1d(d, a.reshape(-1)) for a in (t, h, w)]  # 3 x [N, d]
    return torch.cat(emb, dim=1)[:, :dim].float()  # [N, dim]


def resample_pos_embed(table: Tensor, old_grid: Grid, new_grid: Grid) -> Tensor:
    """Trilinear resampling of a [1, N, D] position table from one token grid to another."""
    if tuple(old_grid) == tuple(new_grid):
        return table
    dim = table.shape[-1]
    x = table.reshape(1, *old_grid, dim).permute(0, 4, 1, 2, 3)  # [1, D, t, h, w]
    x = F.interpolate(x, size=tuple(new_grid), mode="trilinear", align_corners=False)
    return x.permute(0, 2, 3, 4, 1).reshape(1, -1, dim)  # [1, N', D]


# ----------------------------------------------------------------------------------------
# 3D rotary position embedding (V-JEPA 2)
# ----------------------------------------------------------------------------------------


def rope_axis_dims(head_dim: int) -> int:
    """Channels per axis, s = 2*floor(floor(hd/3)/2); the last hd-3s channels are not rotated."""
    return 2 * ((head_dim // 3) // 2)


def token_coords(ids: Tensor, grid_hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Flat token indices -> integer (t, h, w) coordinates, for any index shape."""
    gh, gw = grid_hw
    t = ids // (gh * gw)
    rem = ids - t * (gh * gw)
    h = rem // gw
    return t, h, rem - h * gw


def rope_cos_sin(ids: Tensor, grid_hw: tuple[int, int], head_dim: int) -> tuple[Tensor, Tensor]:
    """cos / sin tables for :func:`apply_rope`, computed once per forward for all blocks.

    ``ids``: flat token indices, [K] (shared by the batch) or [B, K]. Returns two tensors of
    shape [1 or B, K, head_dim] (sin carries the rotation's signs). Unrotated channels get
    cos=1, sin=0, so one fused multiply-add covers the whole head and stays bit-exact.

    The reference tiles the s/2 angles of an axis ([a_0..a_{s/2-1}, a_0..a_{s/2-1}]) while the
    rotation acts on adjacent pairs (2i, 2i+1). That is a layout quirk, kept on purpose: the
    official V-JEPA 2 weights were trained with it.
    """
    s = rope_axis_dims(head_dim)
    omega = torch.arange(s // 2, dtype=torch.float32, device=ids.device)
    omega /= s / 2.0
    omega = 1.0 / ROPE_BASE**omega  # [s/2], float32 exactly as the reference
    cos, sin = [], []
    for axis in token_coords(ids, grid_hw):
        freq = axis.float()[..., None] * omega  # [.., K, s/2]
        cos.append(freq.cos().tile(2))  # [.., K, s], angles tiled (the quirk)
        sin.append(freq.sin().tile(2))
    rest = head_dim - 3 * s
    if rest:
        ones = torch.ones(*ids.shape, rest, device=ids.device)
        cos.append(ones)
        sin.append(torch.zeros_like(ones))
    cos_t = torch.cat(cos, dim=-1)  # [.., K, hd]
    # Fold the pair rotation's sign into sin: out[2i] uses -x[2i+1]*sin, out[2i+1] uses +x[2i]*sin.
    sign = torch.tensor([-1.0, 1.0], device=ids.device).repeat(head_dim // 2)
    if head_dim % 2:
        sign = torch.cat([sign, sign.new_ones(1)])
    sin_t = torch.cat(sin, dim=-1) * sign
    if ids.dim() == 1:
        return cos_t[None], sin_t[None]  # [1, K, hd]
    return cos_t, sin_t  # [B, K, hd]


def _swap_pairs(x: Tensor) -> Tensor:
    """(x0, x1, x2, x3, ..) -> (x1, x0, x3, x2, ..) along the last dim (even length)."""
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of q or k: x*cos + swap(x)*sin (sign folded into sin)."""
    return x * cos + _swap_pairs(x) * sin


# ----------------------------------------------------------------------------------------
# Attention and the pre-LN block
# ----------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and optional 3D RoPE on q, k."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)  # rows: q, k, v; each head-major
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rope: Rope = None, attn_mask: Tensor | None = None) -> Tensor:
        """``attn_mask``: bool [N, N], True where query i may attend to key j (None: all)."""
        B, N, C = x.shape
        # Heads stay in [B, N, H, hd] memory order (q, k, v are transposed views, the same
        # strides as the reference's permute): the CPU and CUDA SDPA kernels work in that
        # layout, so neither the output reshape nor the backward needs a copy.
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim)  # [B, N, 3, H, hd]
        if rope is not None:
            cos, sin = (t[:, :, None, None] for t in rope)  # [B|1, N, 1, 1, hd]
            qk = apply_rope(qkv[:, :, :2], cos, sin)  # [B, N, 2, H, hd], q and k in one op
            q, k = qk.unbind(2)
            v = qkv[:, :, 2]
        else:
            q, k, v = qkv.unbind(2)  # each [B, N, H, hd]
        x = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask
        )
        x = x.transpose(1, 2).reshape(B, N, C)  # [B, N, C], heads concatenated in order
        return self.proj(x)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); exact GELU."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: Tensor, rope: Rope = None, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), rope, attn_mask)  # [B, N, D]
        return x + self.mlp(self.norm2(x))  # [B, N, D]


def run_blocks(
    blocks: nn.ModuleList,
    x: Tensor,
    rope: tuple[Tensor, Tensor] | None,
    checkpointing: bool,
    attn_mask: Tensor | None = None,
) -> Tensor:
    """Apply ``blocks`` in order, recomputing activations in backward when ``checkpointing``."""
    for blk in blocks:
        if checkpointing and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(blk, x, rope, attn_mask, use_reentrant=False)
        else:
            x = blk(x, rope, attn_mask)
    return x


# ----------------------------------------------------------------------------------------
# Initialisation (as the reference V-JEPA 2 constructors do it)
# ----------------------------------------------------------------------------------------


def init_weights(module: nn.Module, generator: torch.Generator, std: float = 0.02) -> None:
    """Trunc-normal(std) Linear / Conv weights with zero bias, LayerNorm ones / zeros."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std, a=-2.0, b=2.0, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def rescale_blocks(blocks: nn.ModuleList) -> None:
    """Divide attn.proj and mlp.fc2 weights of block i by sqrt(2*(i+1)) (residual-depth scaling)."""
    for i, blk in enumerate(blocks):
        blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
        blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))


def add_predictor_stack(
    module: nn.Module, *, embed_dim: int, width: int, depth: int, heads: int, mlp_ratio: float
) -> None:
    """Register the transformer stack both predictors share on ``module``, under the names
    their checkpoints use: ``predictor_blocks`` (``depth`` blocks of ``width``),
    ``predictor_norm`` and ``predictor_proj`` (back to ``embed_dim``)."""
    module.predictor_blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
    module.predictor_norm = nn.LayerNorm(width, eps=LN_EPS)
    module.predictor_proj = nn.Linear(width, embed_dim)


def init_predictor(module: nn.Module, generator: torch.Generator | None) -> None:
    """Reference init of a predictor: trunc-normal 0.02, then depth rescaling of its
    ``predictor_blocks`` (seed 0 when no generator)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    init_weights(module, generator)
    rescale_blocks(module.predictor_blocks)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# A block evaluated at some rows only (the predictor's last block)
# ----------------------------------------------------------------------------------------


def take_rows(x: Tensor, rows: Tensor | slice) -> Tensor:
    """``x[:, rows]`` for a slice, or a per-sample gather for an index tensor [B, K]."""
    if isinstance(rows, slice):
        return x[:, rows]  # [B, K, ...], a view
    rows = rows.reshape(*rows.shape, *([1] * (x.dim() - 2)))  # [B, K, 1, ..]
    return torch.gather(x.expand(rows.shape[0], *x.shape[1:]), 1, rows.expand(-1, -1, *x.shape[2:]))


def block_rows(
    blk: Block, x: Tensor, rows: Tensor | slice, rope: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """``take_rows(blk(x, rope), rows)`` computed at the cost of the selected rows.

    Keys and values come from every token of ``x`` [B, N, D]; queries, the attention output,
    the residual and the MLP only for ``rows`` (a slice, or flat indices [B, K]). Used where
    the other rows' outputs are discarded (the predictor's last block: only the target tokens
    are read). The same math as the full block (a test checks values and gradients); the q
    and k/v projections are two products over row slices of the fused ``qkv`` weight.
    """
    attn = blk.attn
    B, N, C = x.shape
    H, hd = attn.num_heads, attn.head_dim
    h = blk.norm1(x)  # [B, N, C]
    w, b = attn.qkv.weight, attn.qkv.bias  # [3C, C], [3C]: rows q, k, v
    kv = F.linear(h, w[C:], b[C:]).view(B, N, 2, H, hd)  # [B, N, 2, H, hd]
    q = F.linear(take_rows(h, rows), w[:C], b[:C])  # [B, K, C]
    q = q.view(B, q.shape[1], H, hd)  # [B, K, H, hd]
    if rope is not None:
        cos, sin = (t[:, :, None] for t in rope)  # [B|1, N, 1, hd]
        k = apply_rope(kv[:, :, 0], cos, sin)  # [B, N, H, hd]
        q = apply_rope(q, take_rows(cos, rows), take_rows(sin, rows))  # [B, K, H, hd]
        v = kv[:, :, 1]
    else:
        k, v = kv.unbind(2)  # each [B, N, H, hd]
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    y = take_rows(x, rows) + attn.proj(o.transpose(1, 2).reshape(B, -1, C))  # [B, K, C]
    return y + blk.mlp(blk.norm2(y))  # [B, K, C]
