"""The energies the planners minimise: action sequences [N, H, A] -> energies [N].

A :data:`CostBuilder` is called once per replan with what the agent knows there (the current
frame and state, the goal frame and state) and returns the :data:`Cost` of that replan.

- :class:`ModelCost`: a world model's latent energy, L1 between the predicted latent maps and
  the goal image's latent map (``WorldModel.energy``), per model step; with ``plan.goal_cost``
  ``tempo`` or ``blend`` the temporal-distance head's predicted steps to the goal replace or
  join it (:func:`goal_energies`, the one goal term of every world-model cost);
- :class:`OracleCost`: the true simulator's goal distance along the sequence (it bounds what
  planning can do);
- :func:`reduce_energy`: per-step energies -> one per sequence (``plan.energy``: ``final``,
  ``sum`` or ``min`` over the horizon);
- a world model with a discrete latent (``world.latent: discrete``, K codes): each sequence is
  rolled out along M = ``plan.futures`` (default K) code sequences (:class:`Futures`: the codes
  drawn step by step from the model's router, on Latin-hypercube uniforms that every candidate
  of a replan shares, so candidates are compared on the same draws), each future gets the same
  energy as above, and :func:`risk_reduce` turns the M energies into one (``plan.risk``: their
  mean, CVaR of the worst ``plan.cvar_alpha`` share, or the worst);
- a continuous latent (``world.latent: continuous``): the same with M = ``plan.futures``
  futures whose z per step is drawn from the prior N(0, I) on stratified normal draws shared
  by every candidate (vjepa.world.latent_continuous.prior_draws); ``plan.futures`` = 0: one
  future with z = 0, the prior mean.

``vjepa plan``, its plots and ``WorldModel.plan`` all score sequences with these; guardrail
terms (hazards, action size, smoothness) join here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from vjepa.errors import UsageError
from vjepa.world.latent import latin_uniforms
from vjepa.world.latent_continuous import prior_draws
from vjepa.world.planning.planners import Cost

if TYPE_CHECKING:
    import gymnasium as gym

# (frame, state, goal frame, goal state) -> the energy of action sequences from here.
CostBuilder = Callable[[np.ndarray, Any, np.ndarray, Any], Cost]


def check_goal_cost(model: Any, goal_cost: str) -> None:
    """``plan.goal_cost`` tempo / blend need the model's temporal-distance head."""
    if goal_cost not in ("energy", "tempo", "blend"):
        raise UsageError(f"plan.goal_cost must be energy, tempo or blend, got {goal_cost!r}")
    if goal_cost != "energy" and getattr(model, "tempo", None) is None:
        raise UsageError(
            f"plan.goal_cost={goal_cost} needs a temporal-distance head (tempo.safetensors): "
            "train the world model with world.tempo=true"
        )


def goal_energies(
    model: Any, pred: Tensor, z_goal: Tensor, goal_cost: str = "energy", tempo_weight: float = 1.0
) -> Tensor:
    """The goal term of every step, [N, S], of predicted latent maps [N, S, Ntok, D] against the
    goal's [1, Ntok, D]: ``energy`` (``model.energy``), ``tempo`` (``model.tempo``'s predicted env
    steps to the goal / its cap, in [0, 1]) or ``blend`` (energy + tempo_weight x that)."""
    energy = None
    if goal_cost != "tempo":
        energy = torch.stack(
            [model.energy(pred[:, t], z_goal) for t in range(pred.shape[1])], 1
        )  # [N, S]
    if goal_cost == "energy":
        return energy
    head = model.tempo
    near = head.steps(pred, z_goal[:, None]) / head.cap  # [N, S]
    return near if goal_cost == "tempo" else energy + tempo_weight * near


def reduce_energy(per_step: Tensor, energy: str) -> Tensor:
    """[N, H] per-step energies -> [N]: at the horizon (``final``), the ``min``, or the ``sum``."""
    if energy == "final":
        return per_step[:, -1]
    if energy == "min":
        return per_step.min(1).values
    return per_step.sum(1)


def risk_reduce(energy: Tensor, risk: str, alpha: float = 1.0) -> Tensor:
    """[N, M] energies of M equally likely futures -> [N]: the ``mean``, ``cvar`` (the mean of
    the worst ceil(alpha * M) of them) or the ``worst``."""
    if risk == "mean":
        return energy.mean(1)
    if risk == "worst":
        return energy.max(1).values
    if risk == "cvar":
        k = max(1, math.ceil(alpha * energy.shape[1] - 1e-9))
        return energy.topk(k, dim=1).values.mean(1)
    raise ValueError(f"plan.risk must be mean, cvar or worst, got {risk!r}")


class Futures:
    """The M futures per action sequence of a world model with codes or a continuous latent
    (see the module doc).

    ``new_replan()`` draws fresh uniforms on the next rollout (one set per replan, shared by
    every candidate of its search); a deterministic model has one future, its rollout, and so
    has a continuous latent with ``futures`` = 0 (z = 0).
    """

    def __init__(self, model: Any, futures: int = 0, seed: int = 0) -> None:
        self.model = model
        self.codes = int(getattr(model, "codes", 0))
        self.z_dim = int(getattr(model, "z_dim", 0))
        self.m = (futures or self.codes) if self.codes else (max(futures, 1) if self.z_dim else 1)
        self.draws = bool(self.codes) or bool(self.z_dim and futures)  # else one plain rollout
        self.gen = torch.Generator().manual_seed(seed)
        self._u: Tensor | None = None

    def new_replan(self) -> None:
        self._u = None

    def rollout(self, z0: Tensor, seqs: Tensor) -> Tensor:
        """Context [1, Tc, Ntok, D] + sequences [N, H, A] -> predicted maps [N * M, S, Ntok, D]
        (sequence-major: rows n*M .. n*M+M-1 are the futures of sequence n)."""
        n = seqs.shape[0]
        if not self.draws:  # a deterministic model, or a continuous latent at z = 0
            return self.model.rollout(z0.expand(n, *z0.shape[1:]), seqs)
        steps = seqs.shape[1] // int(getattr(self.model, "frameskip", 1))
        cols = steps * max(self.z_dim, 1)
        if self._u is None or self._u.shape[1] != cols:
            self._u = latin_uniforms(self.m, cols, self.gen).to(seqs.device)  # [M, S (* d)]
        z = z0.expand(n * self.m, *z0.shape[1:])
        if self.z_dim:  # prior draws [M, S, d], the same for every sequence
            draws = prior_draws(self.m, steps, self.z_dim, self._u)
            return self.model.rollout(
                z, seqs.repeat_interleave(self.m, 0), codes=draws.repeat(n, 1, 1)
            )
        return self.model.rollout(
            z, seqs.repeat_interleave(self.m, 0), uniforms=self._u.repeat(n, 1)
        )

    def reduce(self, energy: Tensor, risk: str, alpha: float) -> Tensor:
        """Energies [N * M] of :meth:`rollout`'s futures -> [N] by ``risk``."""
        if self.m == 1 and not self.codes:  # one future (a continuous latent: z = 0)
            return energy
        return risk_reduce(energy.view(-1, self.m), risk, alpha)


class ModelCost:
    """Energies from a world model: L1 between predicted latents and the goal image's latents.

    Codes to the WorldModel contract (vjepa/world/model.py): ``encode`` uint8 frames
    [B, T, H, W, 3] -> latents [B, T, N, D]; ``rollout(z, actions)`` -> [B, H, N, D];
    ``energy(z_pred [B, N, D], z_goal [1, N, D]) -> [B]``. States are not used. A model with
    ``codes`` > 0 is rolled out along ``futures`` code sequences per action sequence and its
    energies reduced by ``risk`` / ``alpha`` (:class:`Futures`, :func:`risk_reduce`).
    """

    def __init__(
        self,
        model: Any,
        energy: str,
        device: torch.device,
        *,
        risk: str = "mean",
        alpha: float = 1.0,
        futures: int = 0,
        goal_cost: str = "energy",
        tempo_weight: float = 1.0,
    ) -> None:
        check_goal_cost(model, goal_cost)
        self.model, self.energy, self.device = model, energy, device
        self.goal_cost, self.tempo_weight = goal_cost, tempo_weight
        self.risk, self.alpha = risk, alpha
        self.futures = Futures(model, futures)
        self._goal_key: int | None = None
        self._z_goal: Tensor | None = None

    @torch.no_grad()
    def _encode(self, frame: np.ndarray) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)[None, None]
        return self.model.encode(x)  # [1, 1, N, D]

    def __call__(self, frame: np.ndarray, state: Any, goal_frame: np.ndarray, goal: Any) -> Cost:
        key = hash(goal_frame.tobytes())
        if key != self._goal_key:  # one goal encoding per episode
            self._goal_key, self._z_goal = key, self._encode(goal_frame)[:, 0]  # [1, N, D]
        z0 = self._encode(frame)  # [1, 1, N, D]
        z_goal = self._z_goal
        if getattr(getattr(self.model, "spec", None), "centre", False):
            # world.centre: the model saw window-centred latents; the frame and the goal share
            # the episode's scene, so their mean stands in for the window's
            mean = (z0[:, 0] + z_goal) / 2  # [1, N, D]
            z0, z_goal = z0 - mean[:, None], z_goal - mean
        self.futures.new_replan()

        @torch.no_grad()
        def cost(seqs: Tensor) -> Tensor:  # [N, H, A] -> [N]
            # [N * M, H / r, Ntok, D]: one latent map per model step (r = the model's
            # frameskip) of each of the M futures (M = 1 without codes)
            pred = self.futures.rollout(z0, seqs)
            if self.energy == "final":
                pred = pred[:, -1:]  # only the horizon's map counts
            per_step = goal_energies(
                self.model, pred, z_goal, self.goal_cost, self.tempo_weight
            )  # [N * M, H / r]
            energy = reduce_energy(per_step, self.energy)  # [N * M]
            return self.futures.reduce(energy, self.risk, self.alpha)  # [N]

        return cost


class OracleCost:
    """Energies from the true simulator: roll the sequences out from the true state.

    Uses the env's batched ``step_states`` / ``state_distance`` when it has them, else ``sim``
    (a private copy of the env, built by the caller), reset into the state and stepped
    sequence by sequence.
    """

    def __init__(self, env: gym.Env, energy: str, sim: gym.Env | None = None) -> None:
        self.base = env.unwrapped
        self.energy = energy
        self.batched = has_batched_dynamics(env)
        if not self.batched and sim is None:
            raise ValueError("an env without step_states / state_distance needs a sim copy")
        self.sim = None if self.batched else sim.unwrapped

    def _rollout(self, state: np.ndarray, goal: np.ndarray, seqs: np.ndarray) -> np.ndarray:
        """Goal distances [N, H] along sequences [N, H, A] from ``state``."""
        n, h, _ = seqs.shape
        dist = np.empty((n, h))
        if self.batched:
            s = np.repeat(np.asarray(state)[None], n, axis=0)  # [N, S]
            for t in range(h):
                s = self.base.step_states(s, seqs[:, t])
                dist[:, t] = self.base.state_distance(s, goal)
            return dist
        for i in range(n):
            self.sim.reset(options={"state": state})
            for t in range(h):
                self.sim.step(seqs[i, t])
                dist[i, t] = self.sim.goal_distance(goal)
        return dist

    def __call__(
        self, frame: np.ndarray, state: np.ndarray, goal_frame: np.ndarray, goal: np.ndarray
    ) -> Cost:
        def cost(seqs: Tensor) -> Tensor:  # [N, H, A] -> [N]
            dist = self._rollout(state, goal, seqs.detach().cpu().numpy())  # [N, H]
            return reduce_energy(torch.from_numpy(dist).to(seqs.device), self.energy)

        return cost


def has_batched_dynamics(env: gym.Env) -> bool:
    """Whether the env steps and measures many states at once (the oracle's fast path)."""
    base = env.unwrapped
    return hasattr(base, "step_states") and hasattr(base, "state_distance")
