"""The cost module's guardrails: energy = task term + sum of weight x guardrail term, every
guardrail term summed over EVERY step of the rollout.

Terms (weights in the ``plan`` config section):

- hazard (``plan.guard_weight``): the hazard head's violation probability of each predicted
  latent map (vjepa.world.hazard; ``hazard.pt`` of the world-model run), or for the oracle the
  env's ``violation_states`` of each simulated state;
- action magnitude (``plan.action_weight``): mean squared action, in half-ranges of the box;
- action smoothness (``plan.smooth_weight``): mean squared change between consecutive actions;
- repulsion (``plan.forbidden_weight``) from example images of forbidden states
  (``plan.forbidden_images``, encoded like the goal image): ``exp(-L1 / plan.forbidden_scale)``
  to the nearest one.

Enforcement (``plan.guard_mode``): ``penalty`` adds the hazard term at its fixed weight;
``reject`` adds it too and marks a sample whose hazard exceeds ``plan.guard_threshold`` at any
step as violating (the planners keep it out of the elite set while a safe one exists);
``lagrangian`` weighs the hazard by a multiplier that starts at ``plan.guard_weight`` and rises
by dual ascent after every replan (``update``) while the chosen plan's worst hazard exceeds the
threshold (falls, down to 0, while it stays below), plus the augmented quadratic term
``plan.guard_dual_lr / 2 x sum relu(hazard - threshold)^2``. The multiplier restarts per goal.

A world model with a discrete latent: every term is computed on each of the sequence's futures
(vjepa.world.planning.costs.Futures) and the futures' energies reduced by ``plan.risk``; in
reject mode a sequence violates when the same risk measure of its futures' violation
indicators exceeds 1/2 (mean: most futures violate; worst: any does); the dual ascent reads the
worst hazard over the chosen plan's futures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vjepa.config import PlanConfig
from vjepa.errors import UsageError
from vjepa.world.envs import action_bounds
from vjepa.world.hazard import load_hazard
from vjepa.world.planning.costs import Futures, check_goal_cost, goal_energies, reduce_energy
from vjepa.world.planning.planners import Cost

if TYPE_CHECKING:
    import gymnasium as gym


def action_terms(seqs: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """(magnitude [N], smoothness [N]) of action sequences [N, H, A], in half-ranges of the box,
    summed over the steps."""
    mid, half = (low + high) / 2, ((high - low) / 2).clamp_min(1e-12)  # [A]
    a = (seqs - mid) / half  # [N, H, A]
    magnitude = (a**2).mean(-1).sum(1)  # [N]
    smooth = ((a[:, 1:] - a[:, :-1]) ** 2).mean(-1).sum(1)  # [N]
    return magnitude, smooth


class Guard:
    """The guardrail weights, the enforcement mode and the Lagrange multiplier of one planner."""

    def __init__(self, pcfg: PlanConfig, low: Tensor, high: Tensor) -> None:
        self.pcfg, self.low, self.high = pcfg, low, high
        self.lam = pcfg.guard_weight
        self._goal_key: int | None = None

    def new_goal(self, goal_frame: np.ndarray) -> bool:
        """Restart the multiplier on a new goal; True when the goal changed."""
        key = hash(goal_frame.tobytes())
        if key == self._goal_key:
            return False
        self._goal_key, self.lam = key, self.pcfg.guard_weight
        return True

    def combine(self, task: Tensor, hazard: Tensor | None, seqs: Tensor) -> Tensor | tuple:
        """Task energies [N] + guardrail terms; hazard [N, S] per-step probabilities or None.
        Returns energies [N], or (energies, violating [N]) in reject mode."""
        p = self.pcfg
        energy = task
        magnitude, smooth = action_terms(seqs, self.low.to(seqs), self.high.to(seqs))
        if p.action_weight:
            energy = energy + p.action_weight * magnitude.to(energy)
        if p.smooth_weight:
            energy = energy + p.smooth_weight * smooth.to(energy)
        if hazard is None:
            return energy
        hazard = hazard.to(energy)
        weight = self.lam if p.guard_mode == "lagrangian" else p.guard_weight
        energy = energy + weight * hazard.sum(1)
        if p.guard_mode == "lagrangian":
            over = (hazard - p.guard_threshold).clamp_min(0)  # [N, S]
            energy = energy + p.guard_dual_lr / 2 * (over**2).sum(1)
        if p.guard_mode == "reject":
            return energy, hazard.max(1).values > p.guard_threshold
        return energy

    def ascend(self, hazard: Tensor) -> None:
        """Dual ascent on the multiplier from the chosen plan's per-step hazard [S]."""
        if self.pcfg.guard_mode == "lagrangian":
            gap = float(hazard.max()) - self.pcfg.guard_threshold
            self.lam = max(0.0, self.lam + self.pcfg.guard_dual_lr * gap)


class GuardedModelCost:
    """A world model's cost builder with the guardrails (a drop-in for ``ModelCost``)."""

    def __init__(
        self,
        model: Any,
        pcfg: PlanConfig,
        device: torch.device,
        low: Tensor,
        high: Tensor,
        hazard: torch.nn.Module | None = None,
        forbidden: np.ndarray | None = None,
    ) -> None:
        check_goal_cost(model, pcfg.goal_cost)
        self.model, self.pcfg, self.device = model, pcfg, device
        self.hazard = hazard.to(device) if hazard is not None else None
        self.guard = Guard(pcfg, low, high)
        self.futures = Futures(model, pcfg.futures)
        self._z_goal: Tensor | None = None
        self._z0: Tensor | None = None
        self._z_forbidden = None if forbidden is None or not len(forbidden) else forbidden

    @torch.no_grad()
    def _encode(self, frames: np.ndarray) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)[None]
        return self.model.encode(x)[0]  # [T, N, D]

    @torch.no_grad()
    def per_step(self, pred: Tensor) -> tuple[Tensor, Tensor | None]:
        """(task energies [N, S], hazard-like guardrail per step [N, S] | None) of latent
        rollouts [N, S, Ntok, D]."""
        p = self.pcfg
        task = goal_energies(self.model, pred, self._z_goal, p.goal_cost, p.tempo_weight)  # [N, S]
        hazard = None
        if self.hazard is not None and self.pcfg.guard_weight + self.guard.lam > 0:
            hazard = self.hazard.prob(pred)  # [N, S]
        if self._z_forbidden is not None and self.pcfg.forbidden_weight > 0:
            zf = self._z_forbidden  # [F, Ntok, D]
            dist = torch.stack(
                [(pred - zf[f]).abs().mean(dim=(-2, -1)) for f in range(zf.shape[0])], -1
            ).amin(-1)  # [N, S]
            rep = self.pcfg.forbidden_weight * torch.exp(-dist / self.pcfg.forbidden_scale)
            self._repulsion = rep.sum(1)  # [N]
        else:
            self._repulsion = None
        return task, hazard

    def __call__(self, frame: np.ndarray, state: Any, goal_frame: np.ndarray, goal: Any) -> Cost:
        if self.guard.new_goal(goal_frame):
            self._z_goal = self._encode(goal_frame[None])  # [1, N, D]
            if isinstance(self._z_forbidden, np.ndarray):
                self._z_forbidden = self._encode(self._z_forbidden)  # [F, N, D]
        self._z0 = self._encode(frame[None])[None]  # [1, 1, N, D]
        z0 = self._z0
        self.futures.new_replan()
        fut, p = self.futures, self.pcfg

        @torch.no_grad()
        def cost(seqs: Tensor) -> Tensor | tuple:  # [N, H, A] -> [N] (, violating [N])
            pred = fut.rollout(z0, seqs)  # [N * M, H / r, Ntok, D] (M futures, 1 without codes)
            task, hazard = self.per_step(pred)  # [N * M, S], [N * M, S] | None
            energy = reduce_energy(task, p.energy)  # [N * M]
            if self._repulsion is not None:
                energy = energy + self._repulsion
            if fut.m == 1 and not fut.codes:
                return self.guard.combine(energy, hazard, seqs)
            out = self.guard.combine(energy, hazard, seqs.repeat_interleave(fut.m, 0))
            if isinstance(out, tuple):  # reject mode: the risk of the violation indicators
                e, bad = out
                risky = fut.reduce(bad.float(), p.risk, p.cvar_alpha) > 0.5
                return fut.reduce(e, p.risk, p.cvar_alpha), risky
            return fut.reduce(out, p.risk, p.cvar_alpha)

        return cost

    @torch.no_grad()
    def update(self, plan: Tensor) -> None:
        """After a replan: dual ascent on the chosen plan [H, A] (lagrangian mode)."""
        if self.pcfg.guard_mode != "lagrangian" or self.hazard is None or self._z0 is None:
            return
        pred = self.futures.rollout(self._z0, plan[None].to(self.device))  # [M, S, Ntok, D]
        self.guard.ascend(self.hazard.prob(pred).amax(0))  # [S]: the worst future per step


class GuardedOracleCost:
    """The oracle's cost builder with the guardrails: the true simulator's goal distance and
    the env's ``violation_states`` (0 / 1 per step) as the hazard (a batched env only)."""

    def __init__(self, env: gym.Env, pcfg: PlanConfig, low: Tensor, high: Tensor) -> None:
        self.base, self.pcfg = env.unwrapped, pcfg
        self.guard = Guard(pcfg, low, high)
        self._state: np.ndarray | None = None
        self._goal: np.ndarray | None = None

    def _rollout(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(goal distances [N, H], violations [N, H]) along sequences [N, H, A]."""
        n, h, _ = seqs.shape
        dist, viol = np.empty((n, h)), np.empty((n, h))
        s = np.repeat(np.asarray(self._state)[None], n, axis=0)  # [N, S]
        for t in range(h):
            s = self.base.step_states(s, seqs[:, t])
            dist[:, t] = self.base.state_distance(s, self._goal)
            viol[:, t] = self.base.violation_states(s)
        return dist, viol

    def __call__(
        self, frame: np.ndarray, state: np.ndarray, goal_frame: np.ndarray, goal: np.ndarray
    ) -> Cost:
        self.guard.new_goal(goal_frame)
        self._state, self._goal = state, goal

        def cost(seqs: Tensor) -> Tensor | tuple:  # [N, H, A] -> [N] (, violating [N])
            dist, viol = self._rollout(seqs.detach().cpu().numpy())  # [N, H] each
            energy = reduce_energy(torch.from_numpy(dist).to(seqs.device), self.pcfg.energy)
            hazard = torch.from_numpy(viol).to(seqs.device) if self.pcfg.guard_weight else None
            return self.guard.combine(energy, hazard, seqs)

        return cost

    def update(self, plan: Tensor) -> None:
        if self.pcfg.guard_mode == "lagrangian" and self._state is not None:
            _, viol = self._rollout(plan[None].detach().cpu().numpy())
            self.guard.ascend(torch.from_numpy(viol[0]))


def has_violation_states(env: gym.Env) -> bool:
    """Whether the oracle can see the env's forbidden states (batched dynamics too)."""
    base = env.unwrapped
    return all(hasattr(base, a) for a in ("violation_states", "step_states", "state_distance"))


def forbidden_frames(paths: list[str], size: int) -> np.ndarray:
    """uint8 [F, size, size, 3] of the example images of forbidden states (RGB, resized)."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as img:
                out.append(np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR)))
        except OSError as err:
            raise UsageError(f"plan.forbidden_images: cannot read {path}: {err}") from None
    return np.stack(out)


def guarded_model_cost(
    model: Any, pcfg: PlanConfig, device: torch.device
) -> GuardedModelCost | None:
    """The guarded cost builder of a world model: its run's hazard head (``hazard.pt`` next to
    ``plan.model``), plan.forbidden_images and the action terms; None when no guardrail applies
    (every weight 0, no head, no image): plain ``ModelCost`` then."""
    hazard = load_hazard(pcfg.model) if pcfg.guard_weight > 0 else None
    forbidden = None
    if pcfg.forbidden_images and pcfg.forbidden_weight > 0:
        forbidden = forbidden_frames(pcfg.forbidden_images, int(model.spec.frame_size))
    if hazard is None and forbidden is None and not (pcfg.action_weight or pcfg.smooth_weight):
        return None
    low = torch.tensor(model.spec.action_low, dtype=torch.float32, device=device)
    high = torch.tensor(model.spec.action_high, dtype=torch.float32, device=device)
    return GuardedModelCost(model, pcfg, device, low, high, hazard, forbidden)


def guarded_oracle_cost(env: gym.Env, pcfg: PlanConfig) -> GuardedOracleCost | None:
    """The oracle with the env's ``violation_states`` as its hazard; None without them (or with
    every guardrail weight 0)."""
    if not has_violation_states(env):
        return None
    if not (pcfg.guard_weight or pcfg.action_weight or pcfg.smooth_weight):
        return None
    low, high = action_bounds(env)
    return GuardedOracleCost(env, pcfg, torch.from_numpy(low), torch.from_numpy(high))
