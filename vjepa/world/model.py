"""The world model: a video encoder + the action-conditioned predictor.

- ``encode``: every frame on its own, repeated to fill one tubelet (as V-JEPA 2-AC does), so
  the token map of frame t never sees another frame; optional average pooling of the token
  map (``pool``: fewer tokens, a smoother energy, faster planning); layer norm, no affine.
- ``rollout``: autoregressive prediction from context latents and an action sequence; the
  predictor sees at most ``window - 1`` frames of context (what it was trained on; RoPE is
  relative in time, so a sliding window needs no re-indexing).
- ``energy``: mean L1 between a predicted latent map and the goal image's latent map.
- ``plan``: a thin entry to the one planning path (vjepa.world.planning: the latent cost of
  ``costs.ModelCost`` searched by ``planners.plan_actions`` with the ``plan`` config section).

``forward`` is the training objective (vjepa.world.losses.world_losses, plus SIGReg end to end;
with a discrete latent, ``world.latent: discrete``, the winner-take-all objective and the
router of vjepa.world.latent instead; with a continuous one, vjepa.world.latent_continuous).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa.config import PlanConfig
from vjepa.world.latent import coded_step, stochastic_objective
from vjepa.world.losses import world_losses
from vjepa.world.planning.costs import ModelCost
from vjepa.world.planning.planners import Cost, plan_actions
from vjepa.world.predictor import ACPredictor
from vjepa.world.scene_terms import InverseDynamics, centre_windows, latent_terms
from vjepa.world.tempo import TempoHead


@dataclass
class WorldSpec:
    """What fixes a world model besides its weights (stored in config.json / checkpoints)."""

    frame_size: int
    """Side of the (square) encoder input; frames are resized to it."""
    pool: int
    """Average-pooling factor of the encoder's token map per side."""
    window: int
    """Training window in frames; rollouts keep at most window - 1 frames of context."""
    action_low: list[float]
    """Lower action bounds (the env's Box); actions are scaled to [-1, 1] with them."""
    action_high: list[float]
    """Upper action bounds."""
    frameskip: int = 1
    """Env steps per model step: the predictor's action is r consecutive env actions,
    concatenated (as DINO-WM does with frameskip 5), and a rollout of H model steps covers
    r * H env steps."""
    energy_blur: float = 0.0
    """Gaussian blur (sigma, in tokens of the pooled map) applied to both latent maps before
    the energy's L1. Raw token L1 is flat once the agent is more than a patch from the goal;
    blurred maps overlap, so the energy grows with the distance (see docs/world_model.md)."""
    state_dim: int = 0
    """State size when the predictor has a state token (0: none)."""
    env: str = ""
    """The env spec the training trajectories came from (informational)."""
    encoder_source: str = ""
    """Where the frozen encoder came from (a path, or 'random')."""
    extra: dict = field(default_factory=dict)
    """Free-form provenance (training steps, data)."""
    latent_dim: int = 0
    """With > 0, the latent of a frame is ONE vector: a linear projection of its flattened
    (pooled) token map + BatchNorm (LeWM's projector), in place of the layer norm: SIGReg can
    centre and spread it, and unlike a mean over the tokens of a RoPE ViT (nearly translation
    invariant) it can say where the agent is (docs/world_model.md)."""
    pred_norm: str = "layer"
    """The predictor's output normalisation: ``layer`` (no affine, like a frozen encoder's
    targets) or ``none`` (BatchNorm targets of ``latent_dim``: ``layer`` leaves an error floor
    of about twice the change between two frames on IceRoom, docs/world_latent.md)."""
    centre: bool = False
    """Latents centred per window in training (``world.centre``); planning then centres the
    current frame's and the goal's latents by their mean (vjepa.world.scene_terms)."""

    @property
    def action_dim(self) -> int:
        return len(self.action_low)


# ----------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------


class WorldModel(nn.Module):
    """Video encoder + trainable :class:`ACPredictor` (see the module docstring).

    ``encoder``: a vjepa.artifacts.encoder.VideoEncoder (forward [B,3,T,H,W] normalised ->
    [B,N,D]). It is frozen only on the pretrained-encoder path: end to
    end (``world.encoder_trainable``, the default world config) its parameters require
    gradients and train with the predictor; see :attr:`encoder_trainable`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: ACPredictor,
        spec: WorldSpec,
        *,
        generator: torch.Generator | None = None,
        idm: bool = False,
    ):
        super().__init__()
        if spec.pred_norm not in ("layer", "none"):
            raise ValueError(f"pred_norm must be 'layer' or 'none', got {spec.pred_norm!r}")
        if predictor.action_dim != spec.action_dim * spec.frameskip:
            raise ValueError(
                f"predictor action_dim {predictor.action_dim} != env action dim "
                f"{spec.action_dim} x frameskip {spec.frameskip}"
            )
        self.encoder = encoder
        self.predictor = predictor
        self.spec = spec
        self.projector: nn.Sequential | None = None
        # The temporal-distance head (vjepa.world.tempo), fitted after training with
        # world.tempo and attached by load_world_model; None without one.
        self.tempo: TempoHead | None = None
        if spec.latent_dim:
            # Linear + BatchNorm (no layer norm after it): the latents of end-to-end training.
            side = token_side(encoder.img_size, encoder.patch_size, spec.pool)
            fan_in = side * side * encoder.embed_dim  # the flattened token map
            lin = nn.Linear(fan_in, spec.latent_dim)
            gen = generator if generator is not None else torch.Generator().manual_seed(0)
            with torch.no_grad():
                lin.weight.normal_(0.0, fan_in**-0.5, generator=gen)
                lin.bias.zero_()
            self.projector = nn.Sequential(lin, nn.BatchNorm1d(spec.latent_dim))
        # The inverse-dynamics head of world.idm_weight (training only; not exported).
        self.idm: InverseDynamics | None = None
        if idm:
            enc = encoder
            n = 1 if spec.latent_dim else token_side(enc.img_size, enc.patch_size, spec.pool) ** 2
            size = n * (spec.latent_dim or enc.embed_dim)  # one latent map, flattened
            self.idm = InverseDynamics(size, spec.action_dim * spec.frameskip, generator=generator)
        low = torch.tensor(spec.action_low, dtype=torch.float32)
        high = torch.tensor(spec.action_high, dtype=torch.float32)
        half = (high - low) / 2
        # Unbounded or degenerate dims are left unscaled.
        half = torch.where(torch.isfinite(half) & (half > 0), half, torch.ones_like(half))
        center = torch.where(torch.isfinite(low + high), (low + high) / 2, torch.zeros_like(low))
        r = spec.frameskip
        # Per macro action (r env actions concatenated): the bounds repeat r times.
        self.register_buffer("action_center", center.repeat(r), persistent=False)
        self.register_buffer("action_half", half.repeat(r), persistent=False)

    # -- attributes of the contract ---------------------------------------------------------

    @property
    def action_dim(self) -> int:
        return self.spec.action_dim

    @property
    def frame_size(self) -> int:
        return self.spec.frame_size

    @property
    def action_low(self) -> Tensor:
        return torch.tensor(self.spec.action_low, dtype=torch.float32)

    @property
    def action_high(self) -> Tensor:
        return torch.tensor(self.spec.action_high, dtype=torch.float32)

    @property
    def device(self) -> torch.device:
        return self.action_center.device

    @property
    def context_frames(self) -> int:
        return self.spec.window - 1

    @property
    def encoder_trainable(self) -> bool:
        """Whether the encoder trains with the predictor (end to end) or stays frozen."""
        return any(p.requires_grad for p in self.encoder.parameters())

    # -- training ----------------------------------------------------------------------------

    def forward(
        self,
        actions: Tensor,
        states: Tensor | None = None,
        *,
        latents: Tensor | None = None,
        frames: Tensor | None = None,
        rollout_steps: int,
        rollout_weight: float = 1.0,
        exp: float = 1.0,
        sigreg_weight: float = 0.0,
        sigreg_generator: torch.Generator | None = None,
        reg_scope: str = "global",
        latent_relax: float = 0.0,
        router_weight: float = 1.0,
        kl_weight: float = 0.0,
        idm_weight: float = 0.0,
        time_var: float = 0.0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Training objective of one window batch: (loss, detached terms).

        Exactly one of ``latents`` [B, W, N, D] (encoded beforehand by the frozen encoder) or
        ``frames`` uint8 [B, W, H, W, 3] (end to end: encoded here with gradients; the targets
        are the same encoder's latents, no stop-gradient: SIGReg prevents collapse, as LeWM).
        ``actions`` [B, W-1, r*A] in env units, ``states`` [B, W, S] or None; the loss of
        vjepa.world.losses.world_losses. ``sigreg_weight`` > 0: + SIGReg (LeJEPA / LeWM) on
        every frame's latents, directions from ``sigreg_generator``, over every rank's frames
        (``reg_scope`` global) or this rank's. With codes: winner-take-all + ``router_weight``
        x the router's cross-entropy (vjepa.world.latent); a continuous latent: + ``kl_weight``
        x the posterior's KL (nats per step; vjepa.world.latent_continuous). ``idm_weight`` /
        ``time_var`` / ``spec.centre``: vjepa.world.scene_terms (on the latents SIGReg sees).
        """
        if (latents is None) == (frames is None):
            raise ValueError("pass exactly one of latents (encoded windows) or frames (uint8)")
        z = latents if frames is None else self.encode_train(frames)  # [B, W, N, D]
        zp = centre_windows(z) if self.spec.centre else z  # what the predictor sees and predicts
        if self.codes or self.z_dim:
            loss, terms, ar = stochastic_objective(
                self, zp, actions, states, rollout_steps=rollout_steps, exp=exp,
                relax=latent_relax, router_weight=router_weight, kl_weight=kl_weight,
                generator=sigreg_generator,  # the continuous latent's noise, then SIGReg's
            )  # fmt: skip
        else:
            tf, ar = world_losses(
                self.step, zp, actions, states, rollout_steps=rollout_steps, exp=exp
            )
            terms = {"teacher_forcing": tf.detach()}
            loss = tf
        if ar is not None:
            terms["rollout"] = ar.detach()
            loss = loss + rollout_weight * ar
        a = self.normalize_actions(actions) if idm_weight > 0 else actions
        reg = dict(sigreg_weight=sigreg_weight, sigreg_generator=sigreg_generator)
        reg |= dict(reg_scope=reg_scope, idm_weight=idm_weight, time_var=time_var)
        weighted, more = latent_terms(z, a, self.idm, **reg)
        for value in weighted:  # SIGReg, IDM, variance: each already weighted
            loss = loss + value
        terms |= more
        return loss, terms

    # -- encoding ----------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, frames: Tensor | np.ndarray, chunk: int = 256) -> Tensor:
        """uint8 frames [B, T, H, W, 3] (or [B, H, W, 3]) -> latents [B, T, N, D] (T=1 for one)."""
        x = torch.as_tensor(np.asarray(frames)) if isinstance(frames, np.ndarray) else frames
        if x.dtype != torch.uint8 or x.dim() not in (4, 5) or x.shape[-1] != 3:
            raise ValueError(
                f"encode expects uint8 frames [B,T,H,W,3] or [B,H,W,3], "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        if x.dim() == 4:
            x = x[:, None]  # [B, 1, H, W, 3]
        B, T = x.shape[:2]
        flat = x.reshape(B * T, *x.shape[2:])  # [B*T, H, W, 3]
        out = [self._encode_frames(flat[i : i + chunk]) for i in range(0, B * T, chunk)]
        z = torch.cat(out)  # [B*T, N, D]
        return z.view(B, T, *z.shape[1:])

    def encode_train(self, frames: Tensor) -> Tensor:
        """uint8 frames [B, T, H, W, 3] -> latents [B, T, N, D], with gradients (end-to-end)."""
        B, T = frames.shape[:2]
        z = self._encode_frames(frames.reshape(B * T, *frames.shape[2:]))  # [B*T, N, D]
        return z.view(B, T, *z.shape[1:])

    def _encode_frames(self, frames: Tensor) -> Tensor:
        """uint8 [M, H, W, 3] -> layer-normed (pooled) tokens [M, N, D]."""
        enc, S = self.encoder, self.spec.frame_size
        x = frames.to(self.device).permute(0, 3, 1, 2).float()  # [M, 3, H, W], 0..255
        if x.shape[-2:] != (S, S):
            x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
        x = (x[:, :, None] - enc.mean) * enc.inv_std  # [M, 3, 1, S, S] ImageNet-normalised
        x = x.expand(-1, -1, enc.tubelet_size, -1, -1)  # [M, 3, t, S, S]: one frame, one tubelet
        tokens = enc(x)  # [M, g*g, D]
        g = S // enc.patch_size
        if self.spec.pool > 1:
            grid = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, g, g)  # [M, D, g, g]
            grid = F.avg_pool2d(grid, self.spec.pool)  # [M, D, g/p, g/p]
            tokens = grid.flatten(2).transpose(1, 2)  # [M, N, D]
        if self.projector is not None:
            return self.projector(tokens.flatten(1))[:, None]  # [M, 1, latent_dim]
        return F.layer_norm(tokens, (tokens.shape[-1],))

    # -- prediction --------------------------------------------------------------------------

    @property
    def frameskip(self) -> int:
        return self.spec.frameskip

    def macro_actions(self, actions: Tensor) -> Tensor:
        """Env actions [B, r*H, A] -> model actions [B, H, r*A] (r consecutive ones concatenated)."""
        B, n, A = actions.shape
        r = self.spec.frameskip
        if A != self.action_dim:
            raise ValueError(f"this world model takes {self.action_dim}-d actions, got {A}-d")
        if n % r:
            raise ValueError(f"{n} env actions are not a whole number of model steps of {r}")
        return actions.reshape(B, n // r, r * A)

    def normalize_actions(self, actions: Tensor) -> Tensor:
        """Model actions in env units [.., r*A] -> [-1, 1] per dim (the predictor's input scale)."""
        return (actions - self.action_center) / self.action_half

    def out_norm(self, out: Tensor) -> Tensor:
        """The predictor's output normalised by ``spec.pred_norm``."""
        return F.layer_norm(out, (out.shape[-1],)) if self.spec.pred_norm == "layer" else out

    @property
    def codes(self) -> int:
        """K, the codes of the discrete latent (0: a deterministic model)."""
        return self.predictor.codes

    @property
    def z_dim(self) -> int:
        """The size of the continuous latent z per step (0: none)."""
        return self.predictor.z_dim

    def step(
        self, z: Tensor, actions: Tensor, states: Tensor | None = None, codes: Tensor | None = None
    ) -> Tensor:
        """One predictor pass: [B,T,N,D] + model actions [B,T,r*A] -> layer-normed next maps
        (a model with codes: the maps of ``codes`` long [B, T]; a continuous latent: of z
        float [B, T, z_dim] passed as ``codes``)."""
        out = self.predictor(z, self.normalize_actions(actions), states, codes)
        return self.out_norm(out)

    def step_all(
        self, z: Tensor, actions: Tensor, states: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """A model with codes: (layer-normed next maps of every code [B, T, K, N, D], router
        logits [B, T, K]) from one transformer pass."""
        h = self.predictor.features(z, self.normalize_actions(actions), states)  # [B,T,N,W]
        out = self.predictor.decode_all(h)  # [B, T, K, N, D]
        return self.out_norm(out), self.predictor.route(h)

    def rollout(
        self,
        z: Tensor,
        actions: Tensor,
        states: Tensor | None = None,
        *,
        past_actions: Tensor | None = None,
        codes: Tensor | None = None,
        uniforms: Tensor | None = None,
    ) -> Tensor:
        """Context latents [B, Tc, N, D] + future env actions [B, r*H, A] -> [B, H, N, D].

        r is the frameskip (1 by default): output h is the latent map after r*(h+1) env steps.
        ``actions[:, 0]`` is taken at the last context frame. With Tc > 1, ``past_actions``
        [B, r*(Tc-1), A] are the env actions between the context frames. A model with a state
        token needs ``states`` [B, Tc+H-1, S] for every model step it is conditioned on.

        A model with codes takes the code of each step from ``codes`` long [B, H], or draws it
        from the router's probabilities at that step with ``uniforms`` [B, H] in [0, 1)
        (inverse CDF: one future sampled per row), else takes the router's most likely code.
        A continuous latent takes z [B, H, z_dim] per step in ``codes``, else z = 0.
        """
        B, Tc = z.shape[:2]
        actions = self.macro_actions(actions)  # [B, H, r*A]
        H = actions.shape[1]
        if Tc > 1:
            if past_actions is None or past_actions.shape[1] != self.frameskip * (Tc - 1):
                raise ValueError(
                    f"a context of {Tc} frames needs past_actions [B, {self.frameskip * (Tc - 1)}, A]"
                )
            past_actions = self.macro_actions(past_actions.expand(B, -1, -1))
        acts = actions if Tc == 1 else torch.cat([past_actions, actions], 1)  # [B, Tc-1+H, rA]
        if self.predictor.state_dim and (states is None or states.shape[1] < Tc + H - 1):
            raise ValueError(
                f"this world model was trained with a state token: pass states [B, {Tc + H - 1}, S]"
            )
        ctx, L = z, self.context_frames
        for h in range(H):
            t = ctx.shape[1]  # frames known so far; the last one is frame t-1
            lo = max(0, t - L)
            s = states[:, lo:t] if self.predictor.state_dim else None
            if self.codes or self.z_dim:
                nxt = coded_step(self, ctx[:, lo:t], acts[:, lo:t], s, h, codes, uniforms)
            else:
                nxt = self.step(ctx[:, lo:t], acts[:, lo:t], s)[:, -1:]  # [B, 1, N, D]
            ctx = torch.cat([ctx, nxt], dim=1)
        return ctx[:, Tc:]  # [B, H, N, D]

    def energy(self, z_pred: Tensor, z_goal: Tensor) -> Tensor:
        """[B, N, D] vs [1 or B, N, D] -> [B]: mean L1 distance (of the blurred maps, with
        ``spec.energy_blur`` > 0)."""
        if self.spec.energy_blur > 0:
            z_pred, z_goal = self.blur(z_pred), self.blur(z_goal)
        return (z_pred - z_goal).abs().mean(dim=(-2, -1))

    def blur(self, z: Tensor) -> Tensor:
        """Separable Gaussian blur of token maps [.., N, D] over the (g x g) token grid."""
        g = self.predictor.grid_hw
        sigma = self.spec.energy_blur
        radius = max(1, int(math.ceil(3 * sigma)))
        k = torch.arange(-radius, radius + 1, device=z.device, dtype=z.dtype)
        w = torch.exp(-(k**2) / (2 * sigma**2))
        w = w / w.sum()  # [2r+1]
        lead, (N, D) = z.shape[:-2], z.shape[-2:]
        x = z.reshape(-1, g[0], g[1], D).permute(0, 3, 1, 2).reshape(-1, 1, g[0], g[1])
        x = F.pad(x, (radius, radius, radius, radius), mode="replicate")  # edges: no dark rim
        x = F.conv2d(x, w.view(1, 1, 1, -1))  # along w
        x = F.conv2d(x, w.view(1, 1, -1, 1))  # along h
        x = x.reshape(-1, D, g[0] * g[1]).transpose(1, 2)  # [M, N, D]
        return x.reshape(*lead, N, D)

    # -- planning ----------------------------------------------------------------------------

    def plan_cost(
        self,
        obs: Tensor | np.ndarray,
        goal_obs: Tensor | np.ndarray,
        energy: str,
        pcfg: PlanConfig | None = None,
    ) -> Cost:
        """The energy ``vjepa plan`` minimises from frame ``obs`` to frame ``goal_obs`` (uint8
        [H, W, 3]): env action sequences [M, r*H, A] -> [M] (``energy``: ``plan.energy``; a
        model with codes: ``pcfg``'s plan.risk, plan.cvar_alpha and plan.futures)."""
        obs, goal_obs = np.asarray(obs), np.asarray(goal_obs)
        p = pcfg if pcfg is not None else PlanConfig()
        builder = ModelCost(
            self,
            energy,
            self.device,
            risk=p.risk,
            alpha=p.cvar_alpha,
            futures=p.futures,
            goal_cost=p.goal_cost,
            tempo_weight=p.tempo_weight,
        )
        return builder(obs, None, goal_obs, None)

    @torch.no_grad()
    def plan(
        self,
        obs: Tensor | np.ndarray,
        goal_obs: Tensor | np.ndarray,
        pcfg: PlanConfig | None = None,
        *,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The best env action sequence [plan.horizon, A] from frame ``obs`` to ``goal_obs``.

        The planner and its settings are ``pcfg``'s (the ``plan`` config section; default:
        ``PlanConfig()``, as ``vjepa plan``); the horizon counts env steps (a multiple of the
        frameskip). Execute the first action(s), observe, plan again (MPC); pass the rest of
        the plan, shifted, as ``init`` to warm-start. ``generator`` defaults to seed 0.
        """
        pcfg = pcfg if pcfg is not None else PlanConfig()
        gen = generator if generator is not None else torch.Generator(self.device).manual_seed(0)
        low, high = self.action_low.to(self.device), self.action_high.to(self.device)
        cost = self.plan_cost(obs, goal_obs, pcfg.energy, pcfg)
        return plan_actions(cost, pcfg, low, high, init, generator=gen)  # [H, A]


# ----------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------


def token_side(frame_size: int, patch_size: int, pool: int) -> int:
    """Side of the (pooled) token map; a ValueError names what does not divide."""
    if frame_size % patch_size:
        raise ValueError(f"frame size {frame_size} is not a multiple of patch size {patch_size}")
    side = frame_size // patch_size
    if side % pool:
        raise ValueError(f"token map side {side} is not divisible by world.pool {pool}")
    return side // pool


def build_world_model(
    encoder: nn.Module,
    spec: WorldSpec,
    *,
    width: int,
    depth: int,
    heads: int,
    codes: int = 0,
    z_dim: int = 0,
    generator: torch.Generator | None = None,
    idm: bool = False,
) -> WorldModel:
    """A fresh predictor for ``encoder``'s token map and ``spec``'s action / state sizes
    (``idm``: with the inverse-dynamics head of world.idm_weight)."""
    side = token_side(encoder.img_size, encoder.patch_size, spec.pool)
    side = 1 if spec.latent_dim else side  # one projected vector per frame
    predictor = ACPredictor(
        embed_dim=spec.latent_dim or encoder.embed_dim,
        width=width,
        depth=depth,
        heads=heads,
        grid_hw=(side, side),
        action_dim=spec.action_dim * spec.frameskip,
        state_dim=spec.state_dim,
        codes=codes,
        z_dim=z_dim,
        generator=generator,
    )
    return WorldModel(encoder, predictor, spec, generator=generator, idm=idm)
