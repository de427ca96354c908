"""The continuous latent variable z of a world model that is not deterministic (``world.latent:
continuous``): its training objective, its draws at planning time and its checks.

- **The model** (vjepa.world.predictor): z is a ``world.latent_dim_z``-dim vector per model
  step that enters the predictor's output head of its own step exactly where a discrete code
  does (``h_t + code_mlp([h_t, z_embed(z)])``), so it changes only the prediction of frame t+1.
- **Training** (:func:`continuous_world_losses`): a posterior q(z | z_t, z_t+1) (an MLP on the
  token means of the current and the next target latent and of the predictor's features of
  step t, which have seen the action and the context; its inputs are detached, so the
  posterior shapes neither the encoder nor the transformer) gives a mean and a log-std per step; the predictor takes
  the reparameterised sample mu + sigma * eps in the deterministic objective
  (vjepa.world.losses.world_losses: teacher forcing and rollout, each step with the posterior
  sample of its own transition), plus ``world.kl_weight`` x KL(q || N(0, I)) in nats per step
  (a plain weight, no free bits). The KL is the information bottleneck: each nat of z costs
  that much loss, so z keeps only what pays for itself in prediction error (a huge weight:
  z carries nothing and the model is the deterministic one).
- **Planning** (vjepa.world.planning.costs.Futures): z from the prior, one per model step,
  ``plan.futures`` futures per candidate on stratified normal draws that every candidate of a
  replan shares (:func:`prior_draws`); ``plan.futures`` = 0: z = 0, the prior mean.
- **Checks** (:func:`continuous_errors`, :func:`posterior_checks`, in ``val.json`` through
  vjepa.world.latent.prediction_checks): the prior mean's error (``one_step_error``), the best
  of ``world.latent_samples`` prior draws (``best_of_k``), the same with another window's
  context, the posterior mean's error with its own and with another window's context (z taken
  from a window that is not the context's: if z carried the whole next frame, the second
  would be as low as the first), and the KL in nats.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vjepa.world.losses import world_losses


def kl_to_prior(mu: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) in nats, summed over the last dim: [..., d] -> [...]."""
    return 0.5 * (mu**2 + (2 * log_std).exp() - 1.0 - 2 * log_std).sum(-1)


def continuous_world_losses(
    model,
    z: Tensor,
    actions: Tensor,
    states: Tensor | None = None,
    *,
    rollout_steps: int,
    exp: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """(teacher-forcing loss, rollout loss or None, mean KL per step in nats) of one window of
    a WorldModel with a continuous latent.

    The deterministic objective of vjepa.world.losses.world_losses with step t's prediction
    made from the posterior sample of transition t (teacher forcing and every rollout step
    alike); the posterior reads the target latents detached and the teacher-forced features.
    """
    if actions.shape[1] != z.shape[1] - 1:
        raise ValueError(f"a window of {z.shape[1]} frames needs {z.shape[1] - 1} actions")
    p = model.predictor
    s_ctx = states[:, :-1] if states is not None else None
    h = p.features(z[:, :-1], model.normalize_actions(actions), s_ctx)  # [B, W-1, N, W]
    mu, log_std = p.posterior(z[:, :-1].detach(), z[:, 1:].detach(), h)  # [B, W-1, d]
    eps = torch.randn(mu.shape, generator=generator).to(mu)  # a CPU generator, any device
    zs = mu + log_std.exp() * eps  # [B, W-1, d]

    def step_z(ctx: Tensor, a: Tensor, s: Tensor | None) -> Tensor:
        return model.step(ctx, a, s, zs[:, : ctx.shape[1]])

    first = model.out_norm(p.decode(h, zs))  # the teacher-forced predictions
    tf, ar = world_losses(
        step_z, z, actions, states, rollout_steps=rollout_steps, exp=exp, first=first
    )
    return tf, ar, kl_to_prior(mu, log_std).mean()


def prior_draws(futures: int, steps: int, dim: int, uniforms: Tensor) -> Tensor:
    """Standard normal draws [futures, steps, dim] from stratified uniforms [futures, steps *
    dim] (vjepa.world.latent.latin_uniforms) by the inverse normal CDF: every step and dim
    holds one draw in each 1/futures quantile band of N(0, 1)."""
    u = uniforms.double().clamp(1e-6, 1 - 1e-6)
    return torch.special.ndtri(u).float().view(futures, steps, dim)


def continuous_errors(
    model, ctx: Tensor, a: Tensor, s: Tensor | None, target: Tensor, samples: int, gen
) -> dict[str, Tensor]:
    """{routed: the prior mean z = 0, best: the best of ``samples`` prior draws} [B, T], mean
    L1 per map of one teacher-forced pass of a model with a continuous latent."""
    p = model.predictor
    h = p.features(ctx, model.normalize_actions(a), s)  # [B, T, N, W]
    B, T = h.shape[:2]
    zero = model.out_norm(p.decode(h, h.new_zeros(B, T, p.z_dim)))
    errs = []
    for _ in range(samples):
        draw = torch.randn(B, T, p.z_dim, generator=gen).to(h)
        errs.append(_l1(model.out_norm(p.decode(h, draw)), target))
    return {"routed": _l1(zero, target), "best": torch.stack(errs, -1).min(-1).values}


def posterior_checks(
    model, z: Tensor, a: Tensor, s: Tensor | None, perm: Tensor
) -> dict[str, Tensor]:
    """{posterior_error, shuffled_posterior_error, kl_nats} [B, T] of windows z [B, W, N, D]:
    the posterior mean of each window's own transition, decoded with its own context and with
    the context (latents, actions, states) of window ``perm``; the posterior's KL in nats."""
    p = model.predictor
    h = p.features(z[:, :-1], model.normalize_actions(a), s)
    mu, log_std = p.posterior(z[:, :-1], z[:, 1:], h)  # [B, T, d]
    target = z[:, 1:]
    hs = p.features(
        z[perm, :-1], model.normalize_actions(a[perm]), s[perm] if s is not None else None
    )
    return {
        "posterior_error": _l1(model.out_norm(p.decode(h, mu)), target),
        "shuffled_posterior_error": _l1(model.out_norm(p.decode(hs, mu)), target),
        "kl_nats": kl_to_prior(mu, log_std),
    }


def _l1(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).abs().mean(dim=(-2, -1))  # [B, T]
