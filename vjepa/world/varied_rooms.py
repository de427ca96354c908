"""Varied Rooms: Two Rooms whose scene changes from task to task (pure numpy).

EB-JEPA's Two Rooms draws the wall and the door per episode; a world model must then find the
agent in a scene it has not seen in that arrangement. This env does the same, and can add a
large distractor: a coloured disc, much larger than the agent, that moves from task to task
and that the agent may cross (it is scenery, not an obstacle). A latent that follows the
large static distractor instead of the small agent plans nowhere (issue #25).

The state is ``(x, y, wall_x, door_y, door_half, dist_x, dist_y, dist_r)``: the agent's
position, then the scene (the wall's centre line, the door's centre and half height, the
distractor's centre and radius). An action moves the agent only, so the scene is constant
within an episode and ``reset(options={"state": s})`` restores a whole scene. Tasks need the
door: the start and the goal lie in different rooms. A plain ``reset()`` draws a new scene,
so collected trajectories see many scenes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vjepa.world.planar import PlanarEnv, paint, palette, slide

AGENT_RADIUS = 0.035
WALL_HALF_WIDTH = 0.025
WALL_X_RANGE = (0.35, 0.65)
DOOR_HALF_RANGE = (0.09, 0.14)  # the door's half height; the agent's diameter is 0.07
DIST_R_RANGE = (0.15, 0.22)
SUBSTEPS = 4  # each sub-step is shorter than the wall's thickness: no move tunnels through

_FLOOR, _WALL, _AGENT, _DISTRACTOR = palette(
    (230, 230, 220), (40, 40, 60), (220, 40, 30), (70, 150, 230)
)


def blocked(xy: np.ndarray, scene: np.ndarray) -> np.ndarray:
    """True where an agent centred at ``xy`` [N, 2] overlaps the wall of ``scene`` [N, >=3]
    (outside the door)."""
    wall_x, door_y, door_half = scene[:, 0], scene[:, 1], scene[:, 2]
    in_wall_x = np.abs(xy[:, 0] - wall_x) < WALL_HALF_WIDTH + AGENT_RADIUS
    in_door = np.abs(xy[:, 1] - door_y) < door_half - AGENT_RADIUS
    return in_wall_x & ~in_door


class VariedRoomsEnv(PlanarEnv):
    """Two rooms whose wall, door and (optionally) a large distractor are drawn per task."""

    state_dim = 8
    state_desc = "8 values (x, y, wall_x, door_y, door_half, dist_x, dist_y, dist_r)"

    def __init__(
        self,
        distractor: bool = True,
        **planar: Any,
    ) -> None:
        self.distractor = bool(distractor)
        rng = np.random.default_rng(0)
        state = self._task_state(rng, self._scene(rng), None)
        super().__init__(state, **planar)

    # -- scenes and positions -----------------------------------------------------------------

    def _scene(self, rng: np.random.Generator) -> np.ndarray:
        """``(wall_x, door_y, door_half, dist_x, dist_y, dist_r)`` [6]; no distractor: radius 0."""
        door_half = rng.uniform(*DOOR_HALF_RANGE)
        scene = [rng.uniform(*WALL_X_RANGE), rng.uniform(0.2, 0.8), door_half]
        if self.distractor:
            r = rng.uniform(*DIST_R_RANGE)
            scene += [rng.uniform(r, 1 - r), rng.uniform(r, 1 - r), r]
        else:
            scene += [0.5, 0.5, 0.0]
        return np.asarray(scene, dtype=np.float64)

    def _free_position(
        self, rng: np.random.Generator, scene: np.ndarray, room: int | None
    ) -> np.ndarray:
        """A uniform free position in ``room`` (0 left of the wall, 1 right; None: anywhere)."""
        margin = AGENT_RADIUS + 0.01
        while True:
            xy = rng.uniform(margin, 1.0 - margin, size=2)
            if blocked(xy[None], scene[None])[0]:
                continue
            side = int(xy[0] >= scene[0])
            if room is not None and (
                side != room or abs(xy[0] - scene[0]) < WALL_HALF_WIDTH + margin
            ):
                continue  # a task position lies in its room, not inside the door
            return xy

    def _task_state(self, rng: np.random.Generator, scene: np.ndarray, room: int | None):
        return np.concatenate([self._free_position(rng, scene, room), scene]).astype(np.float32)

    # -- batched dynamics ---------------------------------------------------------------------

    def step_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Next states [N, 8] from states [N, 8] and actions [N, 2]: only the agent moves."""
        states = np.asarray(states, dtype=np.float64)
        move = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0) * self.max_step
        out = states.copy()
        scene = states[:, 2:]  # [N, 6]
        out[:, :2] = slide(
            states[:, :2], move, lambda xy: blocked(xy, scene), AGENT_RADIUS, SUBSTEPS
        )  # [N, 2]
        return out.astype(np.float32)

    def _random_state(self, rng: np.random.Generator) -> np.ndarray:
        return self._task_state(rng, self._scene(rng), None)

    def _checked_state(self, state: np.ndarray) -> np.ndarray:
        if np.any(state < 0) or np.any(state > 1) or blocked(state[None, :2], state[None, 2:])[0]:
            raise ValueError(f"{type(self).__name__} state {state.tolist()} is not in free space")
        return state

    # -- render and task protocol -------------------------------------------------------------

    def render(self) -> np.ndarray:
        """[size, size, 3] uint8: floor, the distractor, the wall with its door, the agent."""
        s, st = self.size, self._state.astype(np.float64)
        img = np.broadcast_to(_FLOOR, (s, s, 3)).copy()  # [H, W, 3]
        if st[7] > 0:
            dist = np.hypot(self._px - st[5], self._py - st[6])  # [H, W]
            img = paint(img, dist, st[7], _DISTRACTOR, s)
        wall = (np.abs(self._px - st[2]) < WALL_HALF_WIDTH) & (np.abs(self._py - st[3]) > st[4])
        img[wall] = _WALL
        dist = np.hypot(self._px - st[0], self._py - st[1])
        img = paint(img, dist, AGENT_RADIUS, _AGENT, s)
        return np.round(img).astype(np.uint8)

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, goal) in one scene, in different rooms (every task needs the door)."""
        rng = np.random.default_rng(seed)
        scene = self._scene(rng)
        room = int(rng.integers(2))
        return self._task_state(rng, scene, room), self._task_state(rng, scene, 1 - room)

    def distractor_xy(self, states: np.ndarray) -> np.ndarray:
        """The distractor's centre [N, 2] in world units (the position-probe diagnostic)."""
        return np.asarray(states, dtype=np.float64).reshape(-1, self.state_dim)[:, 5:7]

    def probe_targets(self, states: np.ndarray) -> dict[str, np.ndarray]:
        """What the position probe of ``vjepa world train`` regresses from the latent: the
        agent's position and, with a distractor, its centre ([N, 2] each, world units)."""
        states = np.asarray(states, dtype=np.float64).reshape(-1, self.state_dim)
        out = {"agent": states[:, :2]}
        if self.distractor:
            out["distractor"] = self.distractor_xy(states)
        return out
