"""The V-JEPA model: context encoder + predictor, regressing an EMA target encoder's features.

``target="online"`` instead regresses the online encoder's own features of the full clip,
with gradients through both sides (LeWM's end-to-end JEPA); ``target_encoder`` then holds an
exact copy of the encoder after every step, so checkpoints and exports read the same keys.
Across-clip regularisers (batch VICReg, SIGReg) are the anti-collapse terms for that mode.

One ``nn.Module`` so ``accelerator.prepare`` can wrap it whole (the target encoder's
parameters have ``requires_grad=False``, so DDP neither syncs nor expects gradients for
them), or its ``encoder`` / ``predictor`` parts separately.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vjepa.artifacts.encoder import load_encoder
from vjepa.config import Config, ConfigError, ObjectiveConfig
from vjepa.jepa.gather import gather_batch
from vjepa.jepa.losses import (
    batch_covariance_loss,
    batch_variance_loss,
    change_weights,
    covariance_loss,
    jepa_loss,
    normalize_targets,
    sigreg_loss,
    temporal_targets,
    time_variance_loss,
    token_losses,
    variance_loss,
)
from vjepa.jepa.masks import apply_masks
from vjepa.jepa.pixels import PIXEL_TARGETS, pixel_dim, pixel_targets
from vjepa.models.encoder import VisionTransformer, build_encoder, teacher_model
from vjepa.models.predictor import Predictor
from vjepa.train.metrics import moving_loss_share, within_across_std


@dataclass
class JEPAOutput:
    """What one forward returns."""

    loss: Tensor  # scalar, the optimised objective
    terms: dict[str, Tensor]  # detached scalars for logging: l1, and each term whose weight > 0
    target_features: Tensor  # [B, N, D] target-encoder output (before the target norm), detached


@dataclass
class Predicted:
    """The predictions of one clip and what they regress: the objective's inputs."""

    preds: list[Tensor]  # [B, Kt_i, D] per mask
    targets: list[Tensor]  # [B, Kt_i, D] per mask, the targets at the predicted tokens
    features: Tensor  # [B, N, D] target features of the full clip (before the norm), detached
    online: Tensor | None  # [B, N, D] online features with gradients (``target="online"`` only)


class JEPA(nn.Module):
    """``forward(video, ctx_idx, tgt_idx) -> JEPAOutput``; ``update_target(m)`` after each step."""

    def __init__(
        self,
        encoder: VisionTransformer,
        predictor: Predictor,
        objective: ObjectiveConfig | None = None,
        *,
        time_steps: int = 1,
        delta_ref: int = 0,
        seed: int = 0,
        target_encoder: nn.Module | None = None,
        frozen_teacher: bool = False,
    ):
        """``objective``: the loss and its terms (default: V-JEPA's L1 on an EMA teacher);
        ``time_steps``: T of the token grid (frames / tubelet); ``delta_ref``: the time step
        delta targets are taken against (:func:`delta_reference`); ``target_encoder``: a given
        teacher (scoring a saved model), default a copy of ``encoder``; ``frozen_teacher``: it
        is a pretrained teacher (``objective.teacher``) that :meth:`update_target` leaves as is."""
        super().__init__()
        o = objective if objective is not None else ObjectiveConfig()
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = (
            target_encoder if target_encoder is not None else copy.deepcopy(encoder)
        )
        self.target_encoder.requires_grad_(False)
        self.frozen_teacher = frozen_teacher
        # the objective's keys, read once (a config section holds the defaults)
        self.loss_exp, self.reg_var, self.reg_cov = o.loss_exp, o.reg_var, o.reg_cov
        self.target, self.reg_input, self.reg_pooled = o.target, o.reg_input, o.reg_pooled
        self.batch_var, self.batch_cov = o.batch_var, o.batch_cov
        self.sigreg, self.sigreg_slices = o.sigreg, o.sigreg_slices
        self.reg_scope = o.reg_scope  # global: the across-clip terms gather every rank's clips
        self.target_mode, self.target_features = o.target_mode, o.target_features
        self.time_var, self.change_weight = o.time_var, o.change_weight
        self.rollout = o.rollout  # chunks of the future predicted one after another
        self.centre_prob = o.centre_prob  # chance a training batch is centred at the input
        self.time_steps = time_steps  # T of the token grid (t, h, w): frames / tubelet
        self.delta_ref = delta_ref  # the time step delta targets are taken against
        self.seed = seed
        self.calls = 0  # forward count: seeds SIGReg's fresh directions (seed, call)

    @property
    def across_clip(self) -> bool:
        """Whether any across-clip term is on (only then are their inputs computed)."""
        return self.batch_var > 0 or self.batch_cov > 0 or self.sigreg > 0

    def _targets(self, video: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(teacher features h, regression targets, online full-clip features or None)."""
        online = None  # [B, N, D] online encoder features of the full clip, with gradients
        if self.target == "online":
            online = self.encoder(video)  # [B, N, D]
            h = online.detach()
            targets_all = online  # LeWM: raw features, no stop-gradient, no target norm
        else:
            with torch.no_grad():
                if self.target_features in PIXEL_TARGETS:  # no teacher: the tubelets' pixels
                    p, t = self.encoder.patch_size, self.encoder.tubelet_size
                    h = pixel_targets(video, p, t, self.target_features)  # [B, N, 3 t p p]
                    targets_all = temporal_targets(
                        h, self.time_steps, self.target_mode, self.delta_ref
                    )
                    return h, targets_all, None
                if self.target_features == "patch":  # pixels, linearly projected per tubelet
                    h = self.target_encoder.patch_embed(video)  # [B, N, D]
                else:
                    h = self.target_encoder(video)  # [B, N, D], the full clip
                targets_all = normalize_targets(h)  # [B, N, D]
        targets_all = temporal_targets(
            targets_all, self.time_steps, self.target_mode, self.delta_ref
        )
        return h, targets_all, online

    def predict_targets(
        self, video: Tensor, ctx_idx: list[Tensor], tgt_idx: list[Tensor], *, mask_index: int = 0
    ) -> Predicted:
        """Predict the target tokens of each mask and gather their targets (no loss yet).

        The one JEPA forward: training (:meth:`forward`) and the surprise score both call it,
        so a change to the objective's inputs reaches both. ``mask_index``: the predictor's
        mask token for the first mask (mask i uses ``mask_index + i``).
        """
        h, targets_all, online = self._targets(video)
        preds, targets = [], []
        spatial = targets_all.shape[1] // self.time_steps  # tokens per time step
        # One patch embedding of the clip, then the blocks once per mask generator.
        contexts = self.encoder(video, masks=list(ctx_idx))  # [B, Kc_i, D] each
        for i, (z, ctx, tgt) in enumerate(zip(contexts, ctx_idx, tgt_idx)):
            preds.append(self._predict(z, ctx, tgt, mask_index + i, spatial))  # [B, Kt, D]
            targets.append(apply_masks(targets_all, tgt))  # [B, Kt, D]
        return Predicted(preds, targets, h, online)

    def _predict(
        self, z: Tensor, ctx: Tensor, tgt: Tensor, mask_index: int, spatial: int
    ) -> Tensor:
        """The predictor on one mask: at once, or (``rollout`` > 1) chunk after chunk of
        target time steps, each seeing the context and the predictions made before it."""
        if self.rollout == 1:
            return self.predictor(z, ctx, tgt, mask_index=mask_index)  # [B, Kt, D]
        chunks = rollout_chunks(tgt, spatial, self.rollout)
        preds: list[Tensor] = []  # [B, Kt_j, D] each, in time order
        for cols in chunks:
            fed = torch.cat(preds, dim=1) if preds else None  # [B, Kf, D]
            fed_idx = tgt[:, : cols.start] if preds else None  # [B, Kf]
            preds.append(self.predictor(z, ctx, tgt[:, cols], mask_index, fed, fed_idx))
        return torch.cat(preds, dim=1)  # [B, Kt, D], tgt's order

    def forward(self, video: Tensor, ctx_idx: list[Tensor], tgt_idx: list[Tensor]) -> JEPAOutput:
        self.calls += 1
        if self.centre_prob == 0:
            return self._forward(video, ctx_idx, tgt_idx)
        # objective.centre_prob: one draw per step from (seed, step), the same on every rank
        centred = bool(torch.rand((), generator=self._step_generator(500_009)) < self.centre_prob)
        encoders = [getattr(m, "module", m) for m in (self.encoder, self.target_encoder)]
        plain = [e.centre_input for e in encoders]
        try:
            for e in encoders:
                e.centre_input = centred
            return self._forward(video, ctx_idx, tgt_idx)
        finally:
            for e, flag in zip(encoders, plain):
                e.centre_input = flag

    def _forward(self, video: Tensor, ctx_idx: list[Tensor], tgt_idx: list[Tensor]) -> JEPAOutput:
        out = self.predict_targets(video, ctx_idx, tgt_idx)
        preds, targets, h, online = out.preds, out.targets, out.features, out.online
        if self.change_weight > 0:  # weight each target token by how much its target moved
            normed = normalize_targets(h)  # [B, N, D] (h is detached)
            w = change_weights(normed, self.time_steps, self.delta_ref, self.change_weight)
            l1 = sum(
                (token_losses(p, t, self.loss_exp) * apply_masks(w[..., None], m)[..., 0]).mean()
                for p, t, m in zip(preds, targets, tgt_idx)
            ) / len(preds)
        else:
            l1 = jepa_loss(preds, targets, self.loss_exp)
        loss, terms = l1, {"l1": l1.detach()}
        # Per-sample VICReg terms on the predictions (V-JEPA's reg_coeff); skipped when off.
        for name, fn, weight in (
            ("var", variance_loss, self.reg_var),
            ("cov", covariance_loss, self.reg_cov),
        ):
            if weight > 0:
                value = sum(fn(p) for p in preds) / len(preds)
                loss = loss + weight * value
                terms[name] = value.detach()
        if self.time_var > 0:  # the context encoder on the whole clip (online mode: done already)
            online = online if online is not None else self.encoder(video)  # [B, N, D]
            value = time_variance_loss(online, self.time_steps)
            loss = loss + self.time_var * value
            terms["time_var"] = value.detach()
        if self.across_clip:
            loss = loss + self._across_clip(video, online, preds, terms)
        return JEPAOutput(loss=loss, terms=terms, target_features=h)

    @torch.no_grad()
    def health(self, video: Tensor, ctx_idx: list[Tensor], tgt_idx: list[Tensor]) -> dict:
        """The slow-feature watch (issue 27) on one batch, without gradients.

        ``ctx_*``: :func:`vjepa.train.metrics.within_across_std` of the CONTEXT encoder (the
        one that trains) on the whole clips. ``moving_*``:
        :func:`vjepa.train.metrics.moving_loss_share` of the first mask pair's per-token loss,
        a target token moving when its layer-normed teacher feature differs from the same
        spatial token's at the delta reference time step by RMS > 0.5.
        """
        was_training = self.training
        self.eval()
        b = video.shape[0]
        feats = self.encoder(video)  # [B, N, D]
        grid = feats.view(b, self.time_steps, -1, feats.shape[-1])  # [B, T, S, D]
        out = {f"ctx_{k}": v for k, v in within_across_std(grid).items()}
        h, targets_all, _ = self._targets(video)
        normed = normalize_targets(h)  # [B, N, D]
        delta = temporal_targets(normed, self.time_steps, "delta", self.delta_ref)  # [B, N, D]
        change = delta.pow(2).mean(-1).sqrt()  # [B, N]
        z = self.encoder(video, masks=[ctx_idx[0]])[0]  # [B, Kc, D]
        spatial = targets_all.shape[1] // self.time_steps
        pred = self._predict(z, ctx_idx[0], tgt_idx[0], 0, spatial)  # [B, Kt, D]
        per_token = token_losses(pred, apply_masks(targets_all, tgt_idx[0]), self.loss_exp)
        moved = apply_masks(change[..., None], tgt_idx[0])[..., 0]  # [B, Kt]
        out |= moving_loss_share(per_token, moved)
        self.train(was_training)
        return out

    def _across_clip(
        self, video: Tensor, online: Tensor | None, preds: list[Tensor], terms: dict[str, Tensor]
    ) -> Tensor:
        """Weighted sum of the across-clip terms that are on; each is also logged in ``terms``."""
        if self.reg_input == "encoder":
            feats = [online if online is not None else self.encoder(video)]  # [[B, N, D]]
        else:
            feats = preds  # [B, Kt, D] each
        if self.reg_pooled:
            feats = [f.mean(dim=1) for f in feats]  # [B, D] each
        if self.reg_scope == "global":  # every rank's clips (vjepa.jepa.gather); alone: as is
            feats = [gather_batch(f) for f in feats]  # [R * B, ...] each
        total = 0.0
        gen = self._step_generator()
        parts = (
            ("batch_var", self.batch_var, batch_variance_loss),
            ("batch_cov", self.batch_cov, batch_covariance_loss),
            ("sigreg", self.sigreg, lambda f: sigreg_loss(f, gen, num_slices=self.sigreg_slices)),
        )
        for name, weight, fn in parts:
            if weight > 0:
                value = sum(fn(f) for f in feats) / len(feats)
                total = total + weight * value
                terms[name] = value.detach()
        return total

    def _step_generator(self, salt: int = 0) -> torch.Generator:
        """A generator seeded by (run seed, forward count, ``salt``): the same draws on every
        rank at a step (SIGReg's directions: salt 0; objective.centre_prob's coin)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls + salt)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target = m * target + (1 - m) * encoder, over all parameters, in two fused ops.

        A pretrained teacher (``frozen_teacher``) is never updated."""
        if self.frozen_teacher:
            return
        if self.target == "online":
            momentum = 0.0  # no teacher: keep target_encoder an exact copy (for checkpoints)
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_mul_(target, momentum)
        torch._foreach_add_(target, online, alpha=1.0 - momentum)


def rollout_chunks(tgt: Tensor, spatial: int, chunks: int) -> list[slice]:
    """Column slices of ``tgt`` [B, Kt] that cut its time steps into ``chunks`` groups in time
    order, as even as they split (fewer groups when there are fewer time steps).

    ``tgt``: token indices in (t, h, w) order with ``spatial`` tokens per time step, sorted, the
    same time steps in every row (a future mask, or surprise's context / rest split)."""
    times = tgt[0] // spatial  # [Kt]
    if (tgt // spatial != times).any() or (times.diff() < 0).any():
        raise ValueError("a rollout needs sorted target tokens with the same time steps per clip")
    steps = torch.unique(times)  # [Tt]
    bounds = [int(g[0]) for g in torch.tensor_split(steps, min(chunks, len(steps)))]
    starts = [int(torch.searchsorted(times, b)) for b in bounds] + [int(tgt.shape[1])]
    return [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]


def delta_reference(cfg: Config) -> int:
    """The time step ``objective.target_mode: delta`` subtracts: the last context time step of
    ``mask.kind: future`` (the same arithmetic as :func:`vjepa.jepa.masks.future_masks`), else 0."""
    steps = cfg.data.frames_per_clip // cfg.model.tubelet_size
    if cfg.mask.kind != "future":
        return 0
    k = min(max(1, int(round(cfg.mask.ratio * steps))), steps - 1)
    return steps - k - 1


def build_jepa(cfg: Config) -> JEPA:
    """Encoder, predictor and target encoder for ``cfg``, initialised from ``cfg.run.seed``.

    ``objective.teacher``: the target encoder is that pretrained encoder, frozen
    (:func:`load_teacher`); pixel targets need none, and the predictor's head emits their size.
    """
    generator = torch.Generator().manual_seed(cfg.run.seed)
    frames, size = cfg.data.frames_per_clip, cfg.data.crop_size
    encoder = build_encoder(cfg.model, num_frames=frames, img_size=size, generator=generator)
    m, o = cfg.model, cfg.objective
    teacher = load_teacher(o.teacher, m.patch_size, m.tubelet_size) if o.teacher else None
    if o.teacher_input == "diff":  # a random teacher that sees only the frame differences
        motion = teacher_model(m, o.teacher_input)
        teacher = build_encoder(motion, num_frames=frames, img_size=size, generator=generator)
        teacher.eval().requires_grad_(False)
    out_dim = None  # the encoder's width
    if o.target_features in PIXEL_TARGETS:
        out_dim = pixel_dim(3, m.patch_size, m.tubelet_size)
    elif teacher is not None:
        out_dim = teacher.embed_dim
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
        out_dim=out_dim,
        rollout=o.rollout > 1,
    )
    return JEPA(
        encoder,
        predictor,
        cfg.objective,
        time_steps=frames // m.tubelet_size,
        delta_ref=delta_reference(cfg),
        seed=cfg.run.seed,
        target_encoder=teacher,
        frozen_teacher=teacher is not None,
    )


def load_teacher(path: str, patch_size: int, tubelet_size: int) -> nn.Module:
    """The frozen pretrained teacher of ``objective.teacher`` (SALT): the encoder
    :func:`vjepa.artifacts.encoder.load_encoder` reads from ``path`` (a run's trained encoder),
    in eval mode with no gradients. Its token grid must be the student's: one line otherwise."""
    teacher = load_encoder(path)
    if (teacher.patch_size, teacher.tubelet_size) != (patch_size, tubelet_size):
        raise ConfigError(
            f"objective.teacher: {path} has patch_size {teacher.patch_size} / tubelet_size "
            f"{teacher.tubelet_size}, the student model.patch_size {patch_size} / "
            f"model.tubelet_size {tubelet_size}: the token grids must match"
        )
    return teacher
