"""The default data-collection policy of `vjepa collect`: random actions with persistence.

PLDM's: at each step the previous action is kept with probability ``repeat_prob``, else a fresh
uniform action is drawn over the action box. Held actions make the agent travel instead of
jittering in place, so episodes cover the space (and, in Two Rooms, cross the door). Envs
without their own ``collect_action`` are collected with it, and Two Rooms builds its
goal-offset tasks with it (:mod:`vjepa.world.two_rooms`), so a task's goal lies on the kind of
trajectory the world model was trained on.
"""

from __future__ import annotations

import numpy as np

REPEAT_PROB = 0.8  # the chance to keep the last action (`vjepa collect --repeat-prob`)


def random_actions(
    rng: np.random.Generator, steps: int, low: np.ndarray, high: np.ndarray, repeat_prob: float
) -> np.ndarray:
    """[steps, A] uniform actions, each kept from the step before with probability repeat_prob."""
    actions = rng.uniform(low, high, size=(steps, low.shape[0])).astype(np.float32)
    keep = rng.random(steps) < repeat_prob  # [steps]
    for t in range(1, steps):
        if keep[t]:
            actions[t] = actions[t - 1]
    return actions
