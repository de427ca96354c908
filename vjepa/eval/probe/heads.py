"""Probe heads trained on top of a frozen encoder: attentive, linear and cosine kNN.

The attentive probe follows V-JEPA 2: ``depth - 1`` self-attention blocks over the patch
tokens, then one cross-attention block in which ``num_queries`` learnable query tokens attend
to every token (``depth == 1`` is exactly V-JEPA 1's pooler). Which tokens it sees is decided
by the caller (:mod:`vjepa.eval.probe.run` concatenates the tokens of all temporal clips of one
spatial crop, as V-JEPA 2 does, and averages the class probabilities over spatial crops).

Parameters are initialised from an explicit ``torch.Generator`` (:func:`init_head`) so that a
probe run is reproducible without touching the global RNG.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.vision_transformer import Block
from torch import nn

from vjepa.errors import UsageError


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention (queries attend to tokens) followed by a pre-LN MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise UsageError(f"probe embed dim {dim} is not divisible by probe.heads={num_heads}")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_x = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, Q, D = q.shape
        N, H = x.shape[1], self.num_heads
        qh = self.q(self.norm_q(q)).view(B, Q, H, D // H).transpose(1, 2)  # [B, H, Q, D/H]
        k, v = (
            self.kv(self.norm_x(x)).view(B, N, 2, H, D // H).permute(2, 0, 3, 1, 4)
        )  # [B, H, N, D/H]
        y = F.scaled_dot_product_attention(qh, k, v)  # [B, H, Q, D/H]
        q = q + self.proj(y.transpose(1, 2).reshape(B, Q, D))  # [B, Q, D]
        return q + self.mlp(self.norm2(q))  # [B, Q, D]


class AttentivePooler(nn.Module):
    """Pool ``[B, N, D]`` tokens into ``[B, num_queries, D]`` with learnable queries."""

    def __init__(self, dim: int, *, num_heads: int, depth: int = 1, num_queries: int = 1) -> None:
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, dim))
        # V-JEPA 2: the first depth-1 blocks are ordinary self-attention blocks over the tokens.
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, qkv_bias=True, norm_layer=nn.LayerNorm) for _ in range(depth - 1)
        )
        self.cross = CrossAttentionBlock(dim, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)  # [B, N, D]
        q = self.query_tokens.expand(x.shape[0], -1, -1)  # [B, Q, D]
        return self.cross(q, x)  # [B, Q, D]


class AttentiveClassifier(nn.Module):
    """Attentive pooler + linear classifier on the mean of the pooled query tokens."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        num_heads: int,
        depth: int = 1,
        num_queries: int = 1,
    ) -> None:
        super().__init__()
        self.pooler = AttentivePooler(
            dim, num_heads=num_heads, depth=depth, num_queries=num_queries
        )
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pooler(x).mean(dim=1)  # [B, D]
        return self.linear(pooled)  # [B, C]


class LinearProbe(nn.Module):
    """Linear classifier on pooled features (no BatchNorm, so it is batch-size independent).

    ``standardize=True`` applies a non-affine LayerNorm to each feature vector first: frozen
    features of different backbones differ wildly in scale, and this makes one lr grid fit all.
    """

    def __init__(self, dim: int, num_classes: int, *, standardize: bool = True) -> None:
        super().__init__()
        self.standardize = standardize
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # token features: mean-pool them
            x = x.mean(dim=1)  # [B, D]
        if self.standardize:
            x = F.layer_norm(x, x.shape[-1:])  # [B, D]
        return self.linear(x)  # [B, C]


@torch.no_grad()
def init_head(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Initialise every parameter of a head from ``generator`` (ViT-style: trunc-normal 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, AttentivePooler):
            nn.init.trunc_normal_(m.query_tokens, std=0.02, generator=generator)
    return module


def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    query_feats: torch.Tensor,
    *,
    k: int,
    temperature: float,
    num_classes: int,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Cosine-similarity kNN with ``exp(sim / T)`` weighted votes (as in DINO).

    Returns class scores ``[Q, num_classes]`` normalised to sum to one per query, so that
    scores of several views of a video can be averaged like probabilities.
    """
    bank = F.normalize(train_feats.float(), dim=-1)  # [M, D]
    k = min(k, bank.shape[0])
    out = []
    for start in range(0, query_feats.shape[0], chunk_size):  # bounded [chunk, M] similarity
        q = F.normalize(query_feats[start : start + chunk_size].float(), dim=-1)  # [q, D]
        sim, idx = (q @ bank.T).topk(k, dim=1)  # [q, k]
        # exp((sim - 1) / T): the same votes after normalisation, but no overflow for small T.
        weights = ((sim - 1.0) / temperature).exp()  # [q, k]
        scores = torch.zeros(q.shape[0], num_classes, dtype=weights.dtype, device=q.device)
        scores.scatter_add_(1, train_labels[idx], weights)  # [q, C]
        out.append(scores / scores.sum(dim=1, keepdim=True))
    return torch.cat(out) if out else torch.zeros(0, num_classes)
