"""The JEPA predictor: context features + mask tokens at the target positions -> target features.

Keys equal the official bare names: ``predictor_embed``, ``mask_tokens.{k}``,
``predictor_pos_embed`` (sin-cos only), ``predictor_blocks.{j}``, ``predictor_norm``,
``predictor_proj``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vjepa.jepa.masks import apply_masks
from vjepa.models.encoder import PosEmbed, token_grid
from vjepa.models.layers import (
    add_predictor_stack,
    block_rows,
    init_predictor,
    rope_cos_sin,
    run_blocks,
    sincos_pos_embed_3d,
)


class Predictor(nn.Module):
    """Narrow ViT that predicts target-token features from context tokens.

    ``forward(ctx [B,Kc,D], ctx_idx [B,Kc], tgt_idx [B,Kt], mask_index) -> [B,Kt,D]`` (D: the
    head's ``out_dim``, by default the encoder's width).
    ``mask_index`` picks the learned mask token (one per mask generator).

    ``last_block_targets_only`` (default True): only the target tokens' outputs are read, so
    the last block computes queries, attention output, residual and MLP for them only (keys
    and values over all tokens): the same math, less work. False runs every block on every
    token, as the reference does (tools/bench_reference.py times the reference that way).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        width: int,
        depth: int,
        heads: int,
        num_mask_tokens: int,
        img_size: int,
        num_frames: int,
        patch_size: int,
        tubelet_size: int,
        pos_embed: PosEmbed,
        mlp_ratio: float = 4.0,
        activation_checkpointing: bool = False,
        generator: torch.Generator | None = None,
        out_dim: int | None = None,
        rollout: bool = False,
    ):
        """``out_dim``: what the head emits (default ``embed_dim``: the encoder's features;
        another size for pixel targets or a teacher of another width). ``rollout``: a
        ``rollout_embed`` projection takes the predictor's own earlier predictions back in as
        context (``forward(..., fed=, fed_idx=)``, ``objective.rollout``)."""
        super().__init__()
        if pos_embed not in ("sincos", "rope"):
            raise ValueError(f"pos_embed must be 'sincos' or 'rope', got {pos_embed!r}")
        if num_mask_tokens < 1:
            raise ValueError(f"num_mask_tokens must be >= 1, got {num_mask_tokens}")
        self.embed_dim = embed_dim
        self.num_heads = heads
        self.mlp_ratio = mlp_ratio
        self.pos_embed_mode: PosEmbed = pos_embed
        self.activation_checkpointing = activation_checkpointing
        self.last_block_targets_only = True
        self.grid = token_grid(num_frames, img_size, img_size, patch_size, tubelet_size)
        # Reference quirk (V-JEPA 2): the predictor's RoPE splits positions with img_size/patch
        # as BOTH the row length and the frame side. Only wrong for non-square inputs, which
        # the official models never see; kept so official predictors compute the same.
        side = img_size // patch_size
        self.rope_grid_hw = (side, side)

        self.predictor_embed = nn.Linear(embed_dim, width)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, width)) for _ in range(num_mask_tokens)
        )
        if pos_embed == "sincos":
            self.register_buffer("predictor_pos_embed", sincos_pos_embed_3d(self.grid, width)[None])
        add_predictor_stack(
            self, embed_dim=embed_dim, width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio
        )
        if out_dim is not None and out_dim != embed_dim:  # the head emits another size
            self.predictor_proj = nn.Linear(width, out_dim)
        if rollout:  # registered last: every other weight draws the same init as without it
            self.rollout_embed = nn.Linear(out_dim or embed_dim, width)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Reference init; mask tokens start at zero (``zero_init_mask_tokens`` of the configs)."""
        init_predictor(self, generator)
        for token in self.mask_tokens:
            nn.init.zeros_(token)

    @property
    def head_dim(self) -> int:
        return self.predictor_embed.out_features // self.num_heads

    def forward(
        self,
        ctx: Tensor,
        ctx_idx: Tensor,
        tgt_idx: Tensor,
        mask_index: int = 0,
        fed: Tensor | None = None,
        fed_idx: Tensor | None = None,
    ) -> Tensor:
        """``fed`` [B, Kf, out] / ``fed_idx`` [B, Kf]: earlier predictions taken back in as
        context tokens at their positions (a rollout; needs ``rollout=True``)."""
        z = self.predictor_embed(ctx)  # [B, Kc, Dp]
        if fed is not None:
            z = torch.cat([z, self.rollout_embed(fed)], dim=1)  # [B, Kc+Kf, Dp]
            ctx_idx = torch.cat([ctx_idx, fed_idx], dim=1)  # [B, Kc+Kf]
        B, Kc, _ = z.shape
        Kt = tgt_idx.shape[1]
        token = self.mask_tokens[mask_index % len(self.mask_tokens)]  # [1, 1, Dp]
        m = token.expand(B, Kt, -1)  # [B, Kt, Dp]
        if self.pos_embed_mode == "sincos":
            pos = self.predictor_pos_embed.expand(B, -1, -1)  # [B, N, Dp]
            z = z + apply_masks(pos, ctx_idx)  # [B, Kc, Dp]
            m = m + apply_masks(pos, tgt_idx)  # [B, Kt, Dp]
            x = torch.cat([z, m], dim=1)  # [B, Kc+Kt, Dp], not sorted (as V-JEPA)
            if self._targets_only():
                x = self._run_targets_only(x, slice(Kc, None), None)  # [B, Kt, Dp]
                return self.predictor_proj(self.predictor_norm(x))  # [B, Kt, D]
            x = run_blocks(self.predictor_blocks, x, None, self.activation_checkpointing)
            x = self.predictor_norm(x)[:, Kc:]  # [B, Kt, Dp]
            return self.predictor_proj(x)  # [B, Kt, D]
        # RoPE (V-JEPA 2): sort the joint sequence by position, run, take the targets back out.
        x = torch.cat([z, m], dim=1)  # [B, Kc+Kt, Dp]
        ids = torch.cat([ctx_idx, tgt_idx], dim=1)  # [B, Kc+Kt]
        order = torch.argsort(ids, dim=1)  # [B, Kc+Kt]
        x = apply_masks(x, order)
        rope = rope_cos_sin(torch.gather(ids, 1, order), self.rope_grid_hw, self.head_dim)
        if self._targets_only():
            where = torch.argsort(order, dim=1)[:, Kc:]  # [B, Kt]: sorted slot of each target
            x = self._run_targets_only(x, where, rope)  # [B, Kt, Dp]
            return self.predictor_proj(self.predictor_norm(x))  # [B, Kt, D]
        x = run_blocks(self.predictor_blocks, x, rope, self.activation_checkpointing)
        x = self.predictor_norm(x)  # [B, Kc+Kt, Dp], sorted order
        where = torch.argsort(order, dim=1)[:, Kc:]  # [B, Kt]: sorted slot of each target
        return self.predictor_proj(apply_masks(x, where))  # [B, Kt, D]

    def _targets_only(self) -> bool:
        """The last-block shortcut applies (not under FSDP2: it reads the block's weights
        directly, and a sharded block gathers them only when called)."""
        from torch.distributed.fsdp import FSDPModule

        last = self.predictor_blocks[-1]
        return self.last_block_targets_only and not isinstance(last, FSDPModule)

    def _run_targets_only(
        self, x: Tensor, rows: Tensor | slice, rope: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        """All blocks but the last on every token, the last one at ``rows`` only."""
        x = run_blocks(self.predictor_blocks[:-1], x, rope, self.activation_checkpointing)
        last = self.predictor_blocks[-1]
        if self.activation_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(
                block_rows, last, x, rows, rope, use_reentrant=False
            )
        return block_rows(last, x, rows, rope)  # [B, K, Dp]
