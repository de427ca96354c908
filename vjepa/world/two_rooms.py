"""Two Rooms: a point agent in a square split by a wall with one door (pure numpy).

The navigation task of PLDM and EB-JEPA. The world is the unit square; a vertical wall at
``x = 0.5`` splits it into two rooms joined by a door around ``y = 0.5``. The state is the
agent's position ``(x, y)``; an action is a 2-D move in ``[-1, 1]^2``, scaled by ``max_step``
(so each coordinate moves at most ``max_step`` per step). The agent slides along the wall and
stops at the borders. Frames are 64x64 RGB renders: a light floor, a dark wall and a red disc
with a soft edge (sub-pixel motion changes the pixels, which a world model needs to see).

Tasks: ``split="hard"`` (the default) puts the start and the goal in different rooms, so every
task needs the door; ``split="any"`` draws both anywhere in free space. With ``goal_offset``
set (``plan.goal_offset``; None by default, which keeps the tasks above), a task follows
stable-worldmodel's protocol instead, whatever the split: the start is a uniform random free
position and the goal the position that ``goal_offset`` steps of the data-collection policy
(``vjepa collect``'s random actions with persistence, :mod:`vjepa.world.policy`) reach from
it; a pair already within ``success_distance`` is drawn again. The env then declares
``max_episode_steps`` = 2 x ``goal_offset`` (:func:`vjepa.world.adapted.offset_budget`: swm's
50 steps at offset 25), which `vjepa plan` takes as the episode budget unless
``plan.max_steps`` is set.

Besides the gymnasium API and the task protocol (see :mod:`vjepa.world.envs`), the env has
batched dynamics, :meth:`TwoRoomsEnv.step_states` and :meth:`TwoRoomsEnv.state_distance`, which
the oracle planner uses to roll out thousands of action sequences at once.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from vjepa.world.adapted import offset_budget
from vjepa.world.planar import PlanarEnv, paint, palette, slide
from vjepa.world.policy import REPEAT_PROB, random_actions

# Geometry in world units (the unit square). The wall's x-range and the door's y-range are
# the free-space boundaries for the agent's centre once its radius is added.
WALL_X = 0.5
WALL_HALF_WIDTH = 0.025
DOOR_LOW, DOOR_HIGH = 0.38, 0.62
AGENT_RADIUS = 0.035
# Collision is checked on sub-steps: each is shorter than the wall's thickness, so no move
# tunnels through it.
SUBSTEPS = 4

_FLOOR, _WALL, _AGENT = palette((230, 230, 220), (40, 40, 60), (220, 40, 30))


def _blocked(xy: np.ndarray) -> np.ndarray:
    """True where an agent centred at ``xy`` [..., 2] would overlap the wall (outside the door)."""
    x, y = xy[..., 0], xy[..., 1]
    in_wall_x = np.abs(x - WALL_X) < WALL_HALF_WIDTH + AGENT_RADIUS
    in_door = (y > DOOR_LOW + AGENT_RADIUS) & (y < DOOR_HIGH - AGENT_RADIUS)
    return in_wall_x & ~in_door


def room_of(xy: np.ndarray) -> np.ndarray:
    """0 for the left room, 1 for the right one (the door's middle counts as right)."""
    return (np.asarray(xy)[..., 0] >= WALL_X).astype(np.int64)


class TwoRoomsEnv(PlanarEnv):
    """A point agent in two rooms joined by a door; 64x64 renders; 2-D moves capped per step."""

    def __init__(
        self,
        split: Literal["hard", "any"] = "hard",
        goal_offset: int | None = None,
        **planar: Any,
    ) -> None:
        """``split``: where a task's start and goal lie (module doc); ``goal_offset``: None for
        those tasks, else the collection-policy steps from a task's start to its goal."""
        if split not in ("hard", "any"):
            raise ValueError(f"TwoRoomsEnv split must be 'hard' or 'any', got {split!r}")
        self.split = split
        self.goal_offset = goal_offset
        state = np.array([0.25, 0.5], dtype=np.float32)
        super().__init__(state, **planar)

    # -- batched dynamics (pure, used by collect's bookkeeping and the oracle planner) ----

    def step_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Next positions [N, 2] from positions [N, 2] and actions [N, 2] (clipped to [-1, 1])."""
        move = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0) * self.max_step  # [N, 2]
        return slide(states, move, _blocked, AGENT_RADIUS, SUBSTEPS).astype(np.float32)

    # -- gymnasium API ---------------------------------------------------------------------

    def _free_position(self, rng: np.random.Generator, room: int | None = None) -> np.ndarray:
        """A uniform random free position (in ``room`` 0 / 1 when given)."""
        margin = AGENT_RADIUS + 0.01
        while True:
            xy = rng.uniform(margin, 1.0 - margin, size=2)
            if _blocked(xy) or (room is not None and room_of(xy) != room):
                continue
            if room is not None and abs(xy[0] - WALL_X) < WALL_HALF_WIDTH + margin:
                continue  # a task position in a room, not inside the door
            return xy.astype(np.float32)

    def _random_state(self, rng: np.random.Generator) -> np.ndarray:
        return self._free_position(rng)

    def _checked_state(self, state: np.ndarray) -> np.ndarray:
        if _blocked(state) or np.any(state < 0) or np.any(state > 1):
            raise ValueError(f"TwoRoomsEnv state {state.tolist()} is not in free space")
        return state

    def render(self) -> np.ndarray:
        """[size, size, 3] uint8: floor, wall with its door, and the agent as a soft red disc."""
        s = self.size
        img = np.broadcast_to(_FLOOR, (s, s, 3)).copy()  # [H, W, 3]
        wall = (np.abs(self._px - WALL_X) < WALL_HALF_WIDTH) & (
            (self._py < DOOR_LOW) | (self._py > DOOR_HIGH)
        )
        img[wall] = _WALL
        dist = np.hypot(self._px - self._state[0], self._py - self._state[1])  # [H, W]
        img = paint(img, dist, AGENT_RADIUS, _AGENT, s)
        return np.round(img).astype(np.uint8)

    # -- task protocol -----------------------------------------------------------------------

    @property
    def max_episode_steps(self) -> int | None:
        """The episode budget of goal-offset tasks (2 x the offset); None without an offset."""
        return None if self.goal_offset is None else offset_budget(self.goal_offset)

    def offset_task(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One draw of a goal-offset task: (start [2], the policy's actions [goal_offset, 2],
        the position they reach from the start [2]), all from ``rng``."""
        start = self._free_position(rng)
        low, high = self.action_space.low, self.action_space.high
        actions = random_actions(rng, int(self.goal_offset), low, high, REPEAT_PROB)
        state = start
        for action in actions:
            state = self.step_states(state[None], action[None])[0]
        return start, actions, state

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, goal) positions; with split='hard' they lie in different rooms; with a
        ``goal_offset`` the goal is that many collection-policy steps from the start."""
        rng = np.random.default_rng(seed)
        if self.goal_offset is not None:
            while True:
                start, _, goal = self.offset_task(rng)
                if self.state_distance(goal[None], start)[0] > self.success_distance:
                    return start, goal
        if self.split == "hard":
            room = int(rng.integers(2))
            return self._free_position(rng, room), self._free_position(rng, 1 - room)
        return self._free_position(rng), self._free_position(rng)
