"""The action-conditioned predictor of the world model (V-JEPA 2-AC style).

Per time step t the sequence holds ``[action token, state token (optional), frame tokens]``:
the action a_t (the move from frame t to t+1), the state s_t and the N tokens of frame t's
latent map. A ViT runs over all steps with **block-causal** attention (every token of step t
sees the tokens of steps <= t and nothing later), so the output at frame t's tokens is the
prediction of frame t+1 and never depends on frames or actions after t. That makes one
forward pass train every step at once (teacher forcing) and makes rollouts exact.

Positions are 3D RoPE (vjepa.models.layers): a frame token at (t, h, w) of the token map, and
the action / state tokens of step t at (t, 0, 0). A zero angle is the identity, so the
conditioning tokens are rotated in time only, as in the reference ``ACRoPEAttention``.
Action and state embeddings are linear.

**A discrete latent** (``codes`` = K > 0, ``world.latent: discrete``): the predictor also takes
a code k in 0..K-1 per step, the latent variable z of a world that is not deterministic. The
code enters after the transformer, in the output head of its own step: the normed output
features h_t of frame t's tokens become ``h_t + code_mlp([h_t, e_k])`` before the projection,
so the code of step t changes the prediction of frame t+1 and nothing else (later steps see it
only through that predicted frame in a rollout), one transformer pass serves all K codes
(:meth:`ACPredictor.decode_all`), and z carries at most log2 K bits per step. A **router**
(:meth:`ACPredictor.route`: a two-layer MLP on the token mean of h_t, which has seen the
current latent, the action and the context) predicts which code wins; its input is detached,
so it never shapes the prediction. With ``codes`` = 0 none of this exists and the predictor is
the deterministic one, weight for weight.

**A continuous latent** (``z_dim`` = d > 0, ``world.latent: continuous``): z is a d-dim vector
per step that enters at the same place, ``h_t + code_mlp([h_t, z_embed(z)])`` (a linear
embedding in place of the code table). A **posterior** (:meth:`ACPredictor.posterior`: an MLP
on the token means of the current and the next target latent and of h_t, detached, which has
seen the action and the context) gives its mean and log-std in training; planning draws z from
the prior N(0, I) (vjepa.world.latent_continuous).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vjepa.models.layers import (
    add_predictor_stack,
    init_predictor,
    rope_cos_sin,
    run_blocks,
)


def block_causal_mask(
    steps: int, tokens_per_step: int, device: torch.device | None = None
) -> Tensor:
    """bool [L, L] with L = steps * tokens_per_step: True where query i may attend to key j.

    Token i belongs to step i // tokens_per_step; it sees every token of the same or an earlier
    step (blocks of the lower triangle), nothing of a later one.
    """
    step = torch.arange(steps, device=device).repeat_interleave(tokens_per_step)  # [L]
    return step[None, :] <= step[:, None]  # [L, L]


def step_positions(steps: int, grid_hw: tuple[int, int], cond_tokens: int) -> Tensor:
    """Flat RoPE indices [L] of the sequence: cond tokens at (t, 0, 0), frame tokens at (t, h, w)."""
    gh, gw = grid_hw
    per_frame = gh * gw
    t = torch.arange(steps)[:, None]  # [T, 1]
    cond = (t * per_frame).expand(steps, cond_tokens)  # [T, C]
    frame = t * per_frame + torch.arange(per_frame)[None, :]  # [T, N]
    return torch.cat([cond, frame], dim=1).reshape(-1)  # [T * (C + N)]


class ACPredictor(nn.Module):
    """``forward(z [B,T,N,D], actions [B,T,A], states [B,T,S] | None) -> [B,T,N,D]``.

    Output t is the predicted latent map of frame t+1 (not yet layer-normed; the world model
    normalises it like the targets).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        width: int,
        depth: int,
        heads: int,
        grid_hw: tuple[int, int],
        action_dim: int,
        state_dim: int = 0,
        mlp_ratio: float = 4.0,
        codes: int = 0,
        z_dim: int = 0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if width % heads:
            raise ValueError(f"predictor width {width} is not divisible by heads {heads}")
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if codes == 1 or codes < 0:
            raise ValueError(f"a discrete latent needs >= 2 codes (0: none), got {codes}")
        if z_dim < 0 or (z_dim and codes):
            raise ValueError(f"z_dim must be >= 0 and excludes codes, got {z_dim} with {codes}")
        self.embed_dim = embed_dim
        self.width = width
        self.num_heads = heads
        self.mlp_ratio = mlp_ratio
        self.grid_hw = (int(grid_hw[0]), int(grid_hw[1]))
        self.action_dim = action_dim
        self.state_dim = state_dim
        self.cond_tokens = 2 if state_dim else 1
        self.codes = int(codes)
        self.z_dim = int(z_dim)

        self.predictor_embed = nn.Linear(embed_dim, width)
        self.action_encoder = nn.Linear(action_dim, width)
        self.state_encoder = nn.Linear(state_dim, width) if state_dim else None
        add_predictor_stack(
            self, embed_dim=embed_dim, width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio
        )
        if self.codes:  # registered after the stack: its init draws come after the stack's
            self.code_embed = nn.Embedding(self.codes, width)
            self.code_mlp = nn.Sequential(
                nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, width)
            )
            self.router = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, codes))
        if self.z_dim:  # the continuous latent: same entry, a linear embedding of z
            self.z_embed = nn.Linear(self.z_dim, width)
            self.code_mlp = nn.Sequential(
                nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, width)
            )
            self.posterior_mlp = nn.Sequential(
                nn.Linear(2 * embed_dim + width, width), nn.GELU(), nn.Linear(width, 2 * self.z_dim)
            )
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Reference init: trunc-normal 0.02, depth rescaling (seed 0 when no generator)."""
        init_predictor(self, generator)
        if self.codes:  # distinct code embeddings (an Embedding is not touched by the init)
            gen = generator if generator is not None else torch.Generator().manual_seed(0)
            with torch.no_grad():
                self.code_embed.weight.normal_(0.0, 1.0, generator=gen)

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    def arch(self) -> dict:
        """Constructor arguments (config.json of an export; rebuilds this predictor)."""
        return (
            {
                "embed_dim": self.embed_dim,
                "width": self.width,
                "depth": len(self.predictor_blocks),
                "heads": self.num_heads,
                "mlp_ratio": float(self.mlp_ratio),
                "grid_hw": list(self.grid_hw),
                "action_dim": self.action_dim,
                "state_dim": self.state_dim,
            }
            | ({"codes": self.codes} if self.codes else {})
            | ({"z_dim": self.z_dim} if self.z_dim else {})
        )

    def forward(
        self, z: Tensor, actions: Tensor, states: Tensor | None = None, codes: Tensor | None = None
    ) -> Tensor:
        """Predictions [B, T, N, D]; a predictor with codes needs ``codes`` long [B, T], one
        with a continuous latent z float [B, T, z_dim] in ``codes``."""
        h = self.features(z, actions, states)  # [B, T, N, W]
        if not (self.codes or self.z_dim):
            return self.predictor_proj(h)
        return self.decode(h, codes)

    def decode(self, h: Tensor, codes: Tensor | None) -> Tensor:
        """Features [B, T, N, W] + codes long [B, T] (a continuous latent: z [B, T, z_dim])
        -> predictions [B, T, N, D]: ``h + code_mlp([h, embedding of the code or z])``."""
        want = h.shape[:2] + ((self.z_dim,) if self.z_dim else ())
        if codes is None or codes.shape != want:
            got = None if codes is None else tuple(codes.shape)
            what = (
                f"a {self.z_dim}-dim latent: pass z [B, T, {self.z_dim}]"
                if self.z_dim
                else f"{self.codes} codes: pass codes [B, T]"
            )
            raise ValueError(f"this predictor has {what}, got {got}")
        e = self.z_embed(codes) if self.z_dim else self.code_embed(codes)  # [B, T, W]
        e = e[:, :, None].expand_as(h)  # [B, T, N, W]
        return self.predictor_proj(h + self.code_mlp(torch.cat([h, e], -1)))

    def posterior(self, z_now: Tensor, z_next: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """The continuous latent's q(z | z_t, z_t+1, h_t): (mean, log-std) [B, T, z_dim] from the
        token means of latent maps [B, T, N, D] (current and next frame) and of the features h
        [B, T, N, W] of the current step (detached: what the context and the action already
        tell, so z need only carry the rest)."""
        m_now = z_now.mean(2)
        x = torch.cat([m_now, z_next.mean(2) - m_now, h.detach().mean(2)], -1)  # [B, T, 2D+W]
        mu, log_std = self.posterior_mlp(x).chunk(2, -1)
        return mu, log_std.clamp(-6.0, 2.0)

    def decode_all(self, h: Tensor) -> Tensor:
        """Features [B, T, N, W] -> the predictions of every code [B, T, K, N, D]."""
        hk = h[:, :, None].expand(-1, -1, self.codes, -1, -1)  # [B, T, K, N, W]
        e = self.code_embed.weight[None, None, :, None].expand_as(hk)  # [B, T, K, N, W]
        return self.predictor_proj(hk + self.code_mlp(torch.cat([hk, e], -1)))

    def route(self, h: Tensor) -> Tensor:
        """Router logits [B, T, K] from features [B, T, N, W] (detached: the router learns the
        winning code without shaping the prediction)."""
        return self.router(h.detach().mean(2))

    def features(self, z: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        """The normed output features [B, T, N, W] of the frame tokens (before the projection)."""
        B, T, N, _ = z.shape
        if N != self.tokens_per_frame:
            raise ValueError(f"expected {self.tokens_per_frame} tokens per frame, got {N}")
        if actions.shape[:2] != (B, T) or actions.shape[-1] != self.action_dim:
            raise ValueError(
                f"actions must be [B={B}, T={T}, A={self.action_dim}], got {tuple(actions.shape)}"
            )
        cond = [self.action_encoder(actions)[:, :, None]]  # [B, T, 1, W]
        if self.state_encoder is not None:
            if states is None or states.shape[:2] != (B, T):
                got = None if states is None else tuple(states.shape)
                raise ValueError(f"this predictor needs states [B={B}, T={T}, S], got {got}")
            cond.append(self.state_encoder(states)[:, :, None])  # [B, T, 1, W]
        x = self.predictor_embed(z)  # [B, T, N, W]
        x = torch.cat([*cond, x], dim=2)  # [B, T, C+N, W]
        K = x.shape[2]
        x = x.flatten(1, 2)  # [B, T*(C+N), W]
        ids = step_positions(T, self.grid_hw, self.cond_tokens).to(z.device)  # [T*(C+N)]
        rope = rope_cos_sin(ids, self.grid_hw, self.head_dim)
        mask = block_causal_mask(T, K, z.device)  # [L, L]
        x = run_blocks(self.predictor_blocks, x, rope, False, mask)  # [B, T*(C+N), W]
        x = x.view(B, T, K, -1)[:, :, self.cond_tokens :]  # [B, T, N, W]: frame tokens only
        return self.predictor_norm(x)  # [B, T, N, W]
