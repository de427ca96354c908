"""The energies the planners minimise: action sequences [N, H, A] -> energies [N].

A :data:`CostBuilder` is called once per replan with what the agent knows there (the current
frame and state, the goal frame and state) and returns the :data:`Cost` of that replan.

- :class:`ModelCost`: a world model's latent energy, L1 between the predicted latent maps and
  the goal image's latent map (``WorldModel.energy``), per model step;
- :class:`OracleCost`: the true simulator's goal distance along the sequence (it bounds what
  planning can do);
- :func:`reduce_energy`: per-step energies -> one per sequence (``plan.energy``: ``final``,
  ``sum`` or ``min`` over the horizon).

``vjepa plan``, its plots and ``WorldModel.plan`` all score sequences with these; guardrail
terms (hazards, action size, smoothness) join here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from vjepa.world.planning.planners import Cost

if TYPE_CHECKING:
    import gymnasium as gym

# (frame, state, goal frame, goal state) -> the energy of action sequences from here.
CostBuilder = Callable[[np.ndarray, Any, np.ndarray, Any], Cost]


def reduce_energy(per_step: Tensor, energy: str) -> Tensor:
    """[N, H] per-step energies -> [N]: at the horizon (``final``), the ``min``, or the ``sum``."""
    if energy == "final":
        return per_step[:, -1]
    if energy == "min":
        return per_step.min(1).values
    return per_step.sum(1)


class ModelCost:
    """Energies from a world model: L1 between predicted latents and the goal image's latents.

    Codes to the WorldModel contract (vjepa/world/model.py): ``encode`` uint8 frames
    [B, T, H, W, 3] -> latents [B, T, N, D]; ``rollout(z, actions)`` -> [B, H, N, D];
    ``energy(z_pred [B, N, D], z_goal [1, N, D]) -> [B]``. States are not used.
    """

    def __init__(self, model: Any, energy: str, device: torch.device) -> None:
        self.model, self.energy, self.device = model, energy, device
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

        @torch.no_grad()
        def cost(seqs: Tensor) -> Tensor:  # [N, H, A] -> [N]
            z = z0.expand(seqs.shape[0], *z0.shape[1:])  # [N, 1, Ntok, D]
            # [N, H / r, Ntok, D]: one latent map per model step (r = the model's frameskip)
            pred = self.model.rollout(z, seqs)
            if self.energy == "final":
                return self.model.energy(pred[:, -1], z_goal)  # [N]
            per_step = torch.stack(
                [self.model.energy(pred[:, t], z_goal) for t in range(pred.shape[1])], 1
            )  # [N, H / r]
            return reduce_energy(per_step, self.energy)

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
