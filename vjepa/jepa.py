"""The V-JEPA model: context encoder + predictor, regressing an EMA target encoder's features.

One ``nn.Module`` so ``accelerator.prepare`` can wrap it whole (the target encoder's
parameters have ``requires_grad=False``, so DDP neither syncs nor expects gradients for
them), or its ``encoder`` / ``predictor`` parts separately.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vjepa.config import Config
from vjepa.losses import covariance_loss, jepa_loss, normalize_targets, variance_loss
from vjepa.masks import apply_masks
from vjepa.models.encoder import VisionTransformer, build_encoder
from vjepa.models.predictor import Predictor


@dataclass
class JEPAOutput:
    """What one forward returns."""

    loss: Tensor  # scalar, the optimised objective
    terms: dict[str, Tensor]  # detached scalars for logging: l1 (regression), var, cov
    target_features: Tensor  # [B, N, D] target-encoder output (before the target norm), detached


class JEPA(nn.Module):
    """``forward(video, ctx_idx, tgt_idx) -> JEPAOutput``; ``update_target(m)`` after each step."""

    def __init__(
        self,
        encoder: VisionTransformer,
        predictor: Predictor,
        *,
        loss_exp: float = 1.0,
        reg_var: float = 0.0,
        reg_cov: float = 0.0,
    ):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = copy.deepcopy(encoder)
        self.target_encoder.requires_grad_(False)
        self.loss_exp = loss_exp
        self.reg_var = reg_var
        self.reg_cov = reg_cov

    def forward(self, video: Tensor, ctx_idx: list[Tensor], tgt_idx: list[Tensor]) -> JEPAOutput:
        with torch.no_grad():
            h = self.target_encoder(video)  # [B, N, D], the full clip
            targets_all = normalize_targets(h)  # [B, N, D]
        preds, targets = [], []
        # One patch embedding of the clip, then the blocks once per mask generator.
        contexts = self.encoder(video, masks=list(ctx_idx))  # [B, Kc_i, D] each
        for i, (z, ctx, tgt) in enumerate(zip(contexts, ctx_idx, tgt_idx)):
            preds.append(self.predictor(z, ctx, tgt, mask_index=i))  # [B, Kt, D]
            targets.append(apply_masks(targets_all, tgt))  # [B, Kt, D]
        l1 = jepa_loss(preds, targets, self.loss_exp)
        var = self._reg(variance_loss, preds, self.reg_var)
        cov = self._reg(covariance_loss, preds, self.reg_cov)
        loss = l1 + self.reg_var * var + self.reg_cov * cov
        terms = {"l1": l1.detach(), "var": var.detach(), "cov": cov.detach()}
        return JEPAOutput(loss=loss, terms=terms, target_features=h)

    @staticmethod
    def _reg(fn, preds: list[Tensor], weight: float) -> Tensor:
        """Mean of ``fn`` over the mask pairs; without gradients when its weight is 0 (log only)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and weight > 0):
            return sum(fn(p) for p in preds) / len(preds)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target = m * target + (1 - m) * encoder, over all parameters, in two fused ops."""
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_mul_(target, momentum)
        torch._foreach_add_(target, online, alpha=1.0 - momentum)


def build_jepa(cfg: Config) -> JEPA:
    """Encoder, predictor and target encoder for ``cfg``, initialised from ``cfg.run.seed``."""
    generator = torch.Generator().manual_seed(cfg.run.seed)
    frames, size = cfg.data.frames_per_clip, cfg.data.crop_size
    encoder = build_encoder(cfg.model, num_frames=frames, img_size=size, generator=generator)
    m = cfg.model
    predictor = Predictor(
        embed_dim=encoder.embed_dim,
        width=m.pred_width,
        depth=m.pred_depth,
        heads=m.pred_heads,
        num_mask_tokens=len(cfg.mask.blocks) if cfg.mask.kind == "multiblock" else 1,
        img_size=size,
        num_frames=frames,
        patch_size=m.patch_size,
        tubelet_size=m.tubelet_size,
        pos_embed=m.pos_embed,
        mlp_ratio=4.0,  # the reference predictor is always 4, whatever the encoder's ratio
        activation_checkpointing=m.activation_checkpointing,
        generator=generator,
    )
    return JEPA(
        encoder,
        predictor,
        loss_exp=cfg.train.loss_exp,
        reg_var=cfg.train.reg_var,
        reg_cov=cfg.train.reg_cov,
    )
