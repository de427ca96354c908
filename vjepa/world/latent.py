"""The discrete latent variable z of a world model that is not deterministic (``world.latent:
discrete``): its training objective, how planning draws codes, and the checks that z does not
carry the future by itself.

- **Training** (:func:`latent_world_losses`): the predictor makes one prediction per code
  (K = ``world.latent_codes``; vjepa.world.predictor); per sample and step the code closest to
  the target wins and only its error counts (winner-take-all; ``world.latent_relax`` adds that
  weight of the mean over codes, so a code that never wins still moves toward the data), in the
  teacher-forcing term and in every step of the rollout term (the rollout continues from the
  winning prediction). A router learns the winning code by cross-entropy
  (``world.router_weight``). z holds at most log2 K bits per step by construction.
- **Sampling** (:func:`code_from_uniform`): a code drawn from the router's probabilities by
  inverse CDF of a given uniform, so planning scores every candidate action sequence on the
  same draws.
- **Checks** (:func:`prediction_checks`, reported in ``val.json``), as MoP-JEPA does: the
  one-step error of the router's code and the best of the K codes; an input-agnostic codebook
  control (K latents fitted to the training frames, :func:`fit_codebook`: the best any K
  predictions that ignore the input can do); a shuffled-context control (the context and
  actions of another window, codes unchanged: if z alone predicted the future, its best-of-K
  error would not rise); the error of predicting "nothing moves"; each split at the steps where
  the env's transition branches when the env says where (``stochastic_states``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from vjepa.world.latent_continuous import (
    continuous_errors,
    continuous_world_losses,
    posterior_checks,
)

# (context latents [B, T, N, D], actions [B, T, r*A], states | None) -> (next maps of every
# code [B, T, K, N, D], router logits [B, T, K])
StepAllFn = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]


def code_errors(preds: Tensor, target: Tensor, exp: float = 1.0) -> Tensor:
    """Per-sample, per-step, per-code errors [B, T, K] of predictions [B, T, K, N, D] against
    targets [B, T, N, D]: mean(|pred - target|^exp) / exp over the map."""
    err = (preds - target[:, :, None]).abs()
    if exp != 1.0:
        err = err**exp
    return err.mean(dim=(-2, -1)) / exp


def wta(err: Tensor, relax: float) -> Tensor:
    """Winner-take-all loss of per-code errors [B, T, K]: (1 - relax) x the minimum over codes
    + relax x their mean, averaged over samples and steps."""
    best = err.min(-1).values
    return ((1.0 - relax) * best + relax * err.mean(-1)).mean() if relax else best.mean()


def latent_world_losses(
    step_all: StepAllFn,
    z: Tensor,
    actions: Tensor,
    states: Tensor | None = None,
    *,
    rollout_steps: int,
    exp: float = 1.0,
    relax: float = 0.0,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """(teacher-forcing loss, rollout loss or None, router cross-entropy) of one window.

    The deterministic objective (vjepa.world.losses.world_losses) with each prediction replaced
    by the best of the K codes' (:func:`wta`). The rollout starts from frame 0 and the winning
    teacher-forced prediction of frame 1, feeds back the winning prediction of each step, and
    scores each step by winner-take-all too. The router is trained on the teacher-forced winners.
    """
    W = z.shape[1]
    if actions.shape[1] != W - 1:
        raise ValueError(f"a window of {W} frames needs {W - 1} actions, got {actions.shape[1]}")
    s_ctx = states[:, :-1] if states is not None else None
    preds, logits = step_all(z[:, :-1], actions, s_ctx)  # [B, W-1, K, N, D], [B, W-1, K]
    err = code_errors(preds, z[:, 1:], exp)  # [B, W-1, K]
    win = err.detach().argmin(-1)  # [B, W-1]
    tf = wta(err, relax)
    router = torch.nn.functional.cross_entropy(logits.flatten(0, 1), win.flatten())
    if rollout_steps <= 0:
        return tf, None, router
    if rollout_steps > W - 1:
        raise ValueError(f"rollout_steps {rollout_steps} > window - 1 = {W - 1}")
    ctx = torch.cat([z[:, :1], _pick(preds[:, :1], win[:, :1])], dim=1)  # [B, 2, N, D]
    terms = [err[:, :1]]  # [B, 1, K]: the first rollout step is the teacher-forced one
    for n in range(1, rollout_steps):
        s = states[:, : n + 1] if states is not None else None
        p, _ = step_all(ctx, actions[:, : n + 1], s)
        p = p[:, -1:]  # [B, 1, K, N, D]: every code's prediction of frame n+1
        e = code_errors(p, z[:, n + 1 : n + 2], exp)  # [B, 1, K]
        terms.append(e)
        ctx = torch.cat([ctx, _pick(p, e.detach().argmin(-1))], dim=1)
    return tf, wta(torch.cat(terms, 1), relax), router


def stochastic_objective(
    model,
    z: Tensor,
    actions: Tensor,
    states: Tensor | None,
    *,
    rollout_steps: int,
    exp: float,
    relax: float,
    router_weight: float,
    kl_weight: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """(loss without the rollout term, its detached terms, the rollout loss or None) of a
    WorldModel with a latent: codes (:func:`latent_world_losses` + ``router_weight`` x the
    router's cross-entropy) or a continuous z (vjepa.world.latent_continuous + ``kl_weight`` x
    the KL in nats per step; its posterior noise from ``generator``)."""
    if model.codes:
        tf, ar, router = latent_world_losses(
            model.step_all, z, actions, states, rollout_steps=rollout_steps, exp=exp, relax=relax
        )
        terms = {"teacher_forcing": tf.detach(), "router": router.detach()}
        return tf + router_weight * router, terms, ar
    tf, ar, kl = continuous_world_losses(
        model, z, actions, states, rollout_steps=rollout_steps, exp=exp, generator=generator
    )
    return tf + kl_weight * kl, {"teacher_forcing": tf.detach(), "kl": kl.detach()}, ar


def _pick(preds: Tensor, codes: Tensor) -> Tensor:
    """The predictions [B, T, N, D] of ``codes`` long [B, T] among preds [B, T, K, N, D]."""
    idx = codes[:, :, None, None, None].expand(-1, -1, 1, *preds.shape[-2:])
    return preds.gather(2, idx)[:, :, 0]


def code_from_uniform(probs: Tensor, u: Tensor) -> Tensor:
    """Codes long [B] drawn from probabilities [B, K] by the inverse CDF at uniforms [B]."""
    cdf = probs.cumsum(-1)  # [B, K]
    k = (cdf < u[:, None].to(cdf)).sum(-1)  # the first code whose CDF reaches u
    return k.clamp_max(probs.shape[-1] - 1)


def coded_step(
    model,
    ctx: Tensor,
    acts: Tensor,
    s: Tensor | None,
    h: int,
    codes: Tensor | None,
    uniforms: Tensor | None,
) -> Tensor:
    """The next map [B, 1, N, D] of rollout step ``h`` of a world model with codes (see
    WorldModel.rollout): the code from ``codes`` [B, H], else drawn from the router at
    ``uniforms`` [B, H], else the router's most likely one. A continuous latent
    (vjepa.world.latent_continuous): z from ``codes`` [B, H, z_dim], else z = 0."""
    feats = model.predictor.features(ctx, model.normalize_actions(acts), s)[:, -1:]
    if codes is not None:
        k = codes[:, h : h + 1]  # [B, 1] (a continuous latent: [B, 1, z_dim])
    elif model.predictor.z_dim:
        k = feats.new_zeros(feats.shape[0], 1, model.predictor.z_dim)  # the prior mean
    else:
        probs = model.predictor.route(feats).softmax(-1)[:, 0]  # [B, K]
        k = probs.argmax(-1) if uniforms is None else code_from_uniform(probs, uniforms[:, h])
        k = k[:, None]  # [B, 1]
    return model.out_norm(model.predictor.decode(feats, k))  # [B, 1, N, D]


def latin_uniforms(futures: int, steps: int, generator: torch.Generator) -> Tensor:
    """Uniforms [futures, steps] stratified per step (Latin hypercube): at every step each of
    the ``futures`` strata [m/M, (m+1)/M) holds one draw, paired across steps at random. M
    futures then follow the router's probabilities to within 1/M at every step."""
    cols = []
    for _ in range(steps):
        perm = torch.randperm(futures, generator=generator).double()
        cols.append(
            (perm + torch.rand(futures, generator=generator, dtype=torch.float64)) / futures
        )
    return torch.stack(cols, 1).float()  # [M, S]


# ----------------------------------------------------------------------------------------
# Checks (val.json)
# ----------------------------------------------------------------------------------------


def fit_codebook(frames: Tensor, k: int, *, iters: int = 25, seed: int = 0) -> Tensor:
    """K latent maps [k, N, D] that best cover ``frames`` [M, N, D] in L1 (k-medians, seeded
    k-means++ start): the input-agnostic control, the K predictions that ignore the input."""
    x = frames.flatten(1).double()  # [M, F]
    gen = torch.Generator().manual_seed(seed)
    centres = [x[torch.randint(len(x), (1,), generator=gen)][0]]
    for _ in range(1, k):
        d = torch.cdist(x, torch.stack(centres), p=1).min(1).values  # [M]
        centres.append(x[torch.multinomial(d + 1e-12, 1, generator=gen)][0])
    c = torch.stack(centres)  # [k, F]
    for _ in range(iters):
        assign = torch.cdist(x, c, p=1).argmin(1)  # [M]
        for j in range(k):
            if bool((assign == j).any()):
                c[j] = x[assign == j].median(0).values
    return c.float().view(k, *frames.shape[1:])


def step_flags(flags: np.ndarray, first: int, window: int, frameskip: int) -> np.ndarray:
    """bool [window - 1]: model step j of a window starting at env frame ``first`` branches
    when any of its ``frameskip`` env steps starts in a state flagged in ``flags`` [T]."""
    return np.array(
        [
            flags[first + j * frameskip : first + (j + 1) * frameskip].any()
            for j in range(window - 1)
        ]
    )


@torch.no_grad()
def prediction_checks(
    model,
    windows: list[dict[str, Tensor | None]],
    branch: list[Tensor] | None,
    codebook: Tensor,
    *,
    seed: int = 0,
    samples: int = 8,
) -> dict[str, float]:
    """One-step (teacher-forced) errors of ``model`` on ``windows`` (batches of
    vjepa.world.trajectories.gather_windows, in a seeded random order), in the model's latent
    space, mean L1 per map:

    - ``one_step_error``: the router's most likely code (a deterministic model: its prediction);
    - ``best_of_k``: the best of the K codes (a deterministic model: the same as above);
    - ``shuffled_best_of_k``: the same with every window's context latents, actions and states
      taken from another window of its batch (codes and targets unchanged);
    - ``codebook_best_of_k``: the nearest of the K maps of ``codebook`` [K, N, D];
    - ``copy_error``: predicting that nothing moves (the last context map);
    - ``router_accuracy``: how often the router's code is the winning one (models with codes);
    - a continuous latent (vjepa.world.latent_continuous): ``one_step_error`` is z = 0 (the
      prior mean), ``best_of_k`` the best of ``samples`` prior draws, and
      ``posterior_error``, ``shuffled_posterior_error`` and ``kl_nats`` are added;

    plus ``branch_*`` / ``steady_*`` of each, over the steps that ``branch`` (bool [B, W-1] per
    batch) flags or not, with ``branch_fraction``.
    """
    gen = torch.Generator().manual_seed(seed)
    rows: dict[str, list[Tensor]] = {}
    for i, win in enumerate(windows):
        z, a, s = win["latents"], win["actions"], win["states"]
        s_ctx = s[:, :-1] if s is not None else None
        target = z[:, 1:]  # [B, T, N, D]
        perm = torch.randperm(len(z), generator=gen)
        s_perm = s_ctx[perm] if s_ctx is not None else None
        errs = _errors(model, z[:, :-1], a, s_ctx, target, samples, gen)
        shuf = _errors(model, z[perm, :-1], a[perm], s_perm, target, samples, gen)
        cb = code_errors(codebook[None, None].expand(*target.shape[:2], -1, -1, -1), target)
        out = {
            "one_step_error": errs["routed"],
            "best_of_k": errs["best"],
            "shuffled_best_of_k": shuf["best"],
            "codebook_best_of_k": cb.min(-1).values,
            "copy_error": (z[:, :-1] - target).abs().mean(dim=(-2, -1)),
        }
        if model.codes:
            out["router_accuracy"] = errs["agree"]
        if model.predictor.z_dim:
            out |= posterior_checks(model, z, a, s_ctx, perm)
        mask = branch[i] if branch is not None else None
        for key, v in out.items():  # v: [B, T]
            rows.setdefault(key, []).append(v.flatten())
            if mask is not None:
                rows.setdefault(f"branch_{key}", []).append(v[mask])
                rows.setdefault(f"steady_{key}", []).append(v[~mask])
        if mask is not None:
            rows.setdefault("branch_fraction", []).append(mask.flatten().float())
    report = {}
    for key, parts in rows.items():
        v = torch.cat(parts)
        report[key] = float(v.float().mean()) if len(v) else None
    report["latent_codes"] = int(model.codes)
    if model.predictor.z_dim:
        report |= {"latent_dim_z": model.predictor.z_dim, "latent_samples": samples}
    return report


def _errors(
    model, ctx: Tensor, a: Tensor, s: Tensor | None, target: Tensor, samples: int, gen
) -> dict[str, Tensor]:
    """{routed, best, agree} [B, T] of one teacher-forced pass."""
    if model.predictor.z_dim:
        return continuous_errors(model, ctx, a, s, target, samples, gen)
    if not model.codes:
        err = (model.step(ctx, a, s) - target).abs().mean(dim=(-2, -1))  # [B, T]
        return {"routed": err, "best": err}
    preds, logits = model.step_all(ctx, a, s)  # [B, T, K, N, D], [B, T, K]
    err = code_errors(preds, target)  # [B, T, K]
    routed = logits.argmax(-1)  # [B, T]
    return {
        "routed": err.gather(-1, routed[..., None])[..., 0],
        "best": err.min(-1).values,
        "agree": (routed == err.argmin(-1)).float(),
    }
