"""The shared body of the shipped planar envs (Two Rooms, the reacher), pure numpy.

Both have a 2-number state moved by a ``Box(-1, 1, (2,))`` action through batched, pure
dynamics (:meth:`PlanarEnv.step_states`, which the oracle planner also rolls out), a distance
to a goal state (:meth:`PlanarEnv.state_distance`) and ``size x size`` renders over a pixel
grid in world units. This class turns those into the gymnasium API and the task protocol of
:mod:`vjepa.world.envs`; a subclass supplies the dynamics, the distance, a random state, the
render and ``sample_task``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np


def palette(*colours: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    """RGB ``colours`` as float32 arrays [3] (a render's paints)."""
    return tuple(np.array(c, dtype=np.float32) for c in colours)


def paint(img: np.ndarray, dist: np.ndarray, radius: float, color: np.ndarray, size: int):
    """``img`` [H, W, 3] with ``color`` over pixels within ``radius`` (world units) of a shape,
    given each pixel's distance ``dist`` [H, W] to it, with a one-pixel soft edge."""
    cover = np.clip((radius - dist) * size + 0.5, 0.0, 1.0)[..., None]  # [H, W, 1]
    return img * (1.0 - cover) + color * cover


def slide(
    pos: np.ndarray,
    move: np.ndarray,
    blocked: Callable[[np.ndarray], np.ndarray],
    radius: float,
    substeps: int,
) -> np.ndarray:
    """Positions [N, 2] (float64) after ``move`` [N, 2] in ``substeps`` sub-steps inside the unit
    square (less ``radius``): a blocked sub-step keeps its free component (slides along the
    wall), else stays. ``blocked`` maps positions [N, 2] to True [N] where they hit a wall."""
    pos = np.asarray(pos, dtype=np.float64).copy()  # [N, 2]
    step = move / substeps  # [N, 2]
    lo, hi = radius, 1.0 - radius
    for _ in range(substeps):
        full = np.clip(pos + step, lo, hi)  # [N, 2]
        slide_y = np.stack([pos[:, 0], full[:, 1]], axis=1)  # [N, 2]
        slide_x = np.stack([full[:, 0], pos[:, 1]], axis=1)  # [N, 2]
        ok_full, ok_y, ok_x = (~blocked(p) for p in (full, slide_y, slide_x))  # [N] each
        nxt = np.where(ok_full[:, None], full, np.where(ok_y[:, None], slide_y, pos))
        pos = np.where((~ok_full & ~ok_y & ok_x)[:, None], slide_x, nxt)  # [N, 2]
    return pos


class PlanarEnv(gym.Env):
    """A 2-D state, 2-D moves capped per step, renders of ``size x size``; see the module doc."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    state_desc = "2 values"  # what a state is, for the error on a bad reset state
    state_dim = 2  # values in a state (a scene that varies per task is part of the state)

    default_max_step = 0.05  # the largest move of a coordinate per step, unless given
    default_success_distance = 0.05  # the goal distance that counts as reached, unless given

    def __init__(
        self,
        state: np.ndarray,
        *,
        low: float | np.ndarray = 0.0,
        high: float | np.ndarray = 1.0,
        render_mode: str | None = "rgb_array",
        size: int = 64,
        max_step: float | None = None,
        success_distance: float | None = None,
    ) -> None:
        """``state``: the initial state [S]; ``low`` / ``high``: the bounds of a state (the
        observation space), per value or all; ``max_step`` / ``success_distance``: None takes
        the env's ``default_max_step`` / ``default_success_distance``. Subclasses take
        ``render_mode``, ``size``, ``max_step`` and ``success_distance`` as ``**planar``."""
        self.render_mode = render_mode
        self.size = size
        self.max_step = float(self.default_max_step if max_step is None else max_step)
        self.success_distance = float(
            self.default_success_distance if success_distance is None else success_distance
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(
            np.broadcast_to(np.asarray(low, np.float32), (self.state_dim,)),
            np.broadcast_to(np.asarray(high, np.float32), (self.state_dim,)),
            dtype=np.float32,
        )
        self._state = np.asarray(state, dtype=np.float32)
        # Pixel centres in world units, y up (row 0 is the top of the image).
        c = (np.arange(size, dtype=np.float32) + 0.5) / size
        self._px, self._py = np.meshgrid(c, c[::-1])  # [H, W] each

    # -- what a subclass supplies ----------------------------------------------------------

    def step_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Next states [N, S] from states [N, S] and actions [N, 2] (batched, pure)."""
        raise NotImplementedError

    def state_distance(self, states: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
        """Distances [N] from states [N, S] to the goal state [S]; by default the Euclidean
        distance between the first two values (the agent's position)."""
        diff = np.asarray(states, dtype=np.float64)[..., :2] - np.asarray(goal_state)[..., :2]
        return np.linalg.norm(diff, axis=-1)

    def state_xy(self, states: np.ndarray) -> np.ndarray:
        """Pixel coordinates (column, row) [N, 2] of the agent in a render (for plots); by
        default the first two values of a state are its position in the unit square, y up."""
        states = np.asarray(states, dtype=np.float64).reshape(-1, self.state_dim)
        return np.stack([states[:, 0] * self.size, (1.0 - states[:, 1]) * self.size], axis=1)

    def _random_state(self, rng: np.random.Generator) -> np.ndarray:
        """A uniform random valid state [S] (the start of a plain reset)."""
        raise NotImplementedError

    def _checked_state(self, state: np.ndarray) -> np.ndarray:
        """``options["state"]`` of a reset as the env's state [S]; raise if it is not one."""
        return state

    # -- gymnasium API and task protocol ----------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and "state" in options:
            state = np.asarray(options["state"], dtype=np.float32).reshape(-1)
            if state.shape != (self.state_dim,):
                name = type(self).__name__
                raise ValueError(f"{name} state must have {self.state_desc}, got {state.shape}")
            self._state = self._checked_state(state)
        else:
            self._state = self._random_state(self.np_random)
        return self._state.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float32).reshape(1, -1)
        if action.shape[1] != 2:
            raise ValueError(f"{type(self).__name__} actions have 2 values, got {action.shape[1]}")
        self._state = self._next_state(action)
        return self._state.copy(), 0.0, False, False, {}

    def _next_state(self, action: np.ndarray) -> np.ndarray:
        """The state [S] after ``action`` [1, 2] from the current one (a real step)."""
        return self.step_states(self._state[None], action)[0]

    def get_state(self) -> np.ndarray:
        return self._state.copy()

    def goal_distance(self, goal_state: np.ndarray) -> float:
        return float(self.state_distance(self._state[None], goal_state)[0])
