"""The shared body of the adapters of outside simulators (Push-T, DMC Reacher) under
stable-worldmodel's evaluation protocol: a task's goal is ``goal_offset`` random-policy steps
after its start, an episode may take ``max_episode_steps`` env steps, an action is 2 values in
``[-1, 1]`` and a state ``state_dim`` unbounded values. A subclass wraps the simulator.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import gymnasium as gym
import numpy as np

GOAL_OFFSET = 25  # random-policy steps from a task's start to its goal


def offset_budget(goal_offset: int) -> int:
    """Env steps an evaluation episode may take when the goal is ``goal_offset`` steps ahead:
    twice the offset (stable-worldmodel's 50-step ``eval_budget`` at its 25-step offset)."""
    return 2 * int(goal_offset)


def optional_module(module: str, env_id: str, package: str, **environ: str) -> ModuleType:
    """``module`` of an optional extra, imported on first use after the ``environ`` defaults
    are set; a missing package is an ImportError that says what ``env_id`` needs."""
    for key, value in environ.items():
        os.environ.setdefault(key, value)
    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(f"{env_id} needs {package}: pip install 'vjepa[benchmarks]'") from err


class AdaptedEnv(gym.Env):
    """Render size, goal offset, episode budget and the spaces of an adapted simulator."""

    state_dim = 0  # values in a state (a subclass sets it)

    def __init__(
        self,
        render_mode: str | None = "rgb_array",
        size: int = 64,
        goal_offset: int = GOAL_OFFSET,
        max_episode_steps: int | None = None,
    ) -> None:
        self.render_mode = render_mode
        self.size = int(size)
        self.goal_offset = int(goal_offset)
        self._max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(self.state_dim,), dtype=np.float32
        )

    @property
    def max_episode_steps(self) -> int:
        """The episode budget: the one given, else :func:`offset_budget` of the goal offset, so
        ``plan.goal_offset`` 50 / 75 gets 100 / 150 steps (50 at the protocol's 25)."""
        if self._max_episode_steps is not None:
            return self._max_episode_steps
        return offset_budget(self.goal_offset)

    def _checked_action(self, action: np.ndarray) -> np.ndarray:
        """``action`` as 2 float64 values clipped to [-1, 1]; raise if it has another size."""
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if action.shape != (2,):
            raise ValueError(f"{type(self).__name__} actions have 2 values, got {action.shape}")
        return action
