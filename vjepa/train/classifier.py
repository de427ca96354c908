"""The fine-tuning model and its regularisers: an encoder with a classification head, drop
path, layer-wise lr decay groups, mixup / CutMix with label smoothing, soft-target
cross-entropy.

Every random draw of a step (whether a batch is mixed, mixup or CutMix, the mixing weight, the
CutMix box, the drop-path masks) comes from one numpy generator that the caller seeds from
(run.seed, FINETUNE, rank, batch index), never from the global RNG: a step is a pure function
of its batch and the weights, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa.config import FinetuneConfig
from vjepa.eval.probe.heads import AttentiveClassifier, LinearProbe, init_head
from vjepa.train.optim import layer_decay_groups


class Classifier(nn.Module):
    """``forward(video [B,3,T,H,W], keep [L,2,B] | None) -> logits [B, C]``.

    ``encoder``: a VisionTransformer (its checkpoint file holds the bare ViT keys, as an export
    does); ``head``: the probe's :class:`AttentiveClassifier` (on every token) or
    :class:`LinearProbe` (on the mean token). ``drop_path``: the drop rate of the last block,
    rising linearly from 0 at the first (stochastic depth). ``keep`` holds, per block, per
    residual branch (attention, MLP) and per clip, the factor that branch's output is multiplied
    by (0, or 1 / (1 - rate): :func:`drop_path_keep`); None: no drop path (evaluation). The
    factors are applied by forward hooks on each block's ``attn`` and ``mlp``, so the encoder's
    own code (and its activation checkpointing, which recomputes through the hooks) is unchanged.
    """

    def __init__(
        self, encoder: nn.Module, head: nn.Module, *, num_classes: int, drop_path: float
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.num_classes = num_classes
        depth = len(encoder.blocks)
        self.drop_rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.identity: dict[str, Any] = {}  # where the backbone came from (for the report)
        self.label_names: list[str] = []  # class i's name (set by the builders and loaders)
        self._keep: Tensor | None = None
        for i, block in enumerate(encoder.blocks):
            block.attn.register_forward_hook(partial(self._drop_path, i, 0))
            block.mlp.register_forward_hook(partial(self._drop_path, i, 1))

    def _drop_path(self, block: int, branch: int, module: nn.Module, args: Any, out: Tensor):
        if self._keep is None:
            return None
        scale = self._keep[block, branch].to(out.dtype)  # [B]
        return out * scale.view(-1, *([1] * (out.dim() - 1)))  # [B, N, D]

    def forward(self, video: Tensor, keep: Tensor | None = None) -> Tensor:
        self._keep = keep  # kept until the next forward: a recomputing backward reads it
        tokens = self.encoder(video)  # [B, N, D]
        return self.head(tokens)  # [B, C]


def build_head(f: FinetuneConfig, dim: int, num_classes: int, gen: torch.Generator) -> nn.Module:
    """The classification head of ``finetune.head``, initialised from ``gen``."""
    if f.head == "attentive":
        head: nn.Module = AttentiveClassifier(
            dim, num_classes, num_heads=f.head_heads, depth=f.head_depth
        )
    else:
        head = LinearProbe(dim, num_classes)
    return init_head(head, gen)


def layer_of(name: str, depth: int) -> int:
    """The lr-decay layer of a parameter of :class:`Classifier`: 0 the patch embedding,
    ``i + 1`` block ``i``, ``depth + 1`` the final norm and the head."""
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    if name.startswith("encoder.") and not name.startswith("encoder.norm."):
        return 0
    return depth + 1


def finetune_groups(model: Classifier, weight_decay: float, decay: float) -> list[dict]:
    """AdamW groups of ``model`` with layer-wise lr decay ``decay`` (1: every scale 1)."""
    depth = len(model.encoder.blocks)
    return layer_decay_groups(
        model,
        weight_decay,
        decay=decay,
        layer_of=lambda name: layer_of(name, depth),
        num_layers=depth + 1,
    )


def drop_path_keep(rates: list[float], batch: int, rng: np.random.Generator) -> Tensor:
    """``[L, 2, B]`` factors: 0 with probability ``rates[l]``, else ``1 / (1 - rates[l])``."""
    r = np.asarray(rates, dtype=np.float64)[:, None, None]  # [L, 1, 1]
    kept = rng.random((len(rates), 2, batch)) >= r  # [L, 2, B]
    return torch.from_numpy(kept / (1.0 - r)).float()


def smoothed_targets(labels: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """One-hot targets ``[B, C]`` with label smoothing (``smoothing / C`` on every class)."""
    off = smoothing / num_classes
    target = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return target.scatter_(1, labels[:, None].long(), 1.0 - smoothing + off)  # [B, C]


def mix_batch(
    video: Tensor, labels: Tensor, num_classes: int, f: FinetuneConfig, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """Mixup or CutMix of a batch with its reverse (timm's pairing) and the soft targets.

    ``video`` [B, C, T, H, W] float, ``labels`` Long [B] -> mixed video, targets [B, C]. With
    probability ``1 - mix_prob``, or both alphas 0, the batch is returned as it is (targets
    still smoothed). CutMix pastes one box, the same in every frame; its weight is the kept area.
    """
    target = smoothed_targets(labels, num_classes, f.label_smoothing)  # [B, C]
    modes = [(name, a) for name, a in (("mixup", f.mixup), ("cutmix", f.cutmix)) if a > 0]
    if not modes or rng.random() >= f.mix_prob:
        return video, target
    mode, alpha = modes[int(rng.random() < 0.5)] if len(modes) == 2 else modes[0]
    lam = float(rng.beta(alpha, alpha))
    other = video.flip(0)  # [B, C, T, H, W]: clip b mixes with clip B - 1 - b
    if mode == "mixup":
        video = lam * video + (1.0 - lam) * other
    else:
        H, W = video.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        cy, cx = int(rng.integers(H)), int(rng.integers(W))
        h, w = int(H * cut), int(W * cut)
        y0, y1 = max(cy - h // 2, 0), min(cy + h // 2, H)
        x0, x1 = max(cx - w // 2, 0), min(cx + w // 2, W)
        video = video.clone()
        video[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
    return video, lam * target + (1.0 - lam) * target.flip(0)


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits`` [B, C] against soft ``target`` [B, C] (in float32)."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()
