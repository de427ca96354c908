"""Maze: a point agent in a fixed maze of n x n cells, tasks several cells apart (pure numpy).

The long-horizon env of the planning issue (#22). The layout is one perfect maze (exactly one
path between any two cells), drawn once from ``layout_seed`` by a depth-first backtracker, so a
world model can learn it from data. A task puts the start and the goal ``min_cells`` or more
cells apart along the maze's path, so the straight line to the goal runs into walls: a flat
planner that follows the latent (or true) distance to the goal gets stuck in dead ends, and a
planner that sets subgoals along the path does not. ``max_episode_steps`` (the episode budget
`vjepa demo world` takes from an env) is 200 env steps.

The state is the agent's position ``(x, y)``; an action is a 2-D move in ``[-1, 1]^2`` scaled
by ``max_step``; the agent slides along walls. :meth:`MazeEnv.cell_path` gives the cells of the
one path between two positions (oracle subgoals for the subgoal-reachability report).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import numpy as np

from vjepa.world.planar import PlanarEnv, paint, palette, slide

AGENT_RADIUS = 0.03
WALL_HALF_WIDTH = 0.016
SUBSTEPS = 4

_FLOOR, _WALL, _AGENT = palette((232, 228, 215), (45, 45, 70), (220, 40, 30))


def maze_edges(n: int, seed: int) -> set[tuple[int, int]]:
    """Open passages of a perfect n x n maze as pairs of cell ids ``r * n + c`` (low, high)."""
    rng = np.random.default_rng(seed)
    seen, stack, edges = {0}, [0], set()
    while stack:
        cell = stack[-1]
        r, c = divmod(cell, n)
        nbrs = [
            (r + dr) * n + (c + dc)
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
            if 0 <= r + dr < n and 0 <= c + dc < n and (r + dr) * n + (c + dc) not in seen
        ]
        if not nbrs:
            stack.pop()
            continue
        nxt = nbrs[int(rng.integers(len(nbrs)))]
        edges.add((min(cell, nxt), max(cell, nxt)))
        seen.add(nxt)
        stack.append(nxt)
    return edges


def wall_boxes(n: int, edges: set[tuple[int, int]]) -> np.ndarray:
    """Inner walls as boxes ``[x0, x1, y0, y1]`` [W, 4] in world units (row 0 at the bottom)."""
    h, boxes = WALL_HALF_WIDTH, []
    for r in range(n):
        for c in range(n):
            cell = r * n + c
            if c + 1 < n and (cell, cell + 1) not in edges:  # wall on the cell's right side
                x = (c + 1) / n
                boxes.append([x - h, x + h, r / n - h, (r + 1) / n + h])
            if r + 1 < n and (cell, cell + n) not in edges:  # wall on the cell's top side
                y = (r + 1) / n
                boxes.append([c / n - h, (c + 1) / n + h, y - h, y + h])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


class MazeEnv(PlanarEnv):
    """A point agent in a fixed n x n maze; tasks are ``min_cells`` or more cells apart."""

    default_max_step = 0.03

    def __init__(
        self,
        n: int = 4,
        layout_seed: int = 3,
        min_cells: int = 5,
        max_episode_steps: int = 200,
        split: Literal["far", "any"] = "far",
        **planar: Any,
    ) -> None:
        if n < 2:
            raise ValueError(f"MazeEnv needs n >= 2 cells a side, got {n}")
        self.n, self.min_cells, self.split = n, int(min_cells), split
        self.max_episode_steps = int(max_episode_steps)
        self.edges = maze_edges(n, layout_seed)
        self._boxes = wall_boxes(n, self.edges)  # [W, 4]
        state = np.array([0.5 / n, 0.5 / n], dtype=np.float32)
        super().__init__(state, **planar)

    # -- geometry -------------------------------------------------------------------------------

    def blocked(self, xy: np.ndarray) -> np.ndarray:
        """True [N] where an agent centred at ``xy`` [N, 2] overlaps a wall."""
        b, r = self._boxes[None], AGENT_RADIUS  # [1, W, 4]
        x, y = xy[:, None, 0], xy[:, None, 1]  # [N, 1]
        hit = (x > b[..., 0] - r) & (x < b[..., 1] + r) & (y > b[..., 2] - r) & (y < b[..., 3] + r)
        return hit.any(axis=1)

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """Cell ids [N] of positions [N, 2]."""
        rc = np.clip(
            (np.asarray(xy, dtype=np.float64)[..., ::-1] * self.n).astype(int), 0, self.n - 1
        )
        return (rc[..., 0] * self.n + rc[..., 1]).reshape(-1)

    def cell_centre(self, cell: int) -> np.ndarray:
        r, c = divmod(int(cell), self.n)
        return np.array([(c + 0.5) / self.n, (r + 0.5) / self.n], dtype=np.float32)

    def cell_path(self, a: np.ndarray, b: np.ndarray) -> list[int]:
        """The cells of the maze's one path from position ``a`` to position ``b`` (both ends)."""
        start, goal = int(self.cell_of(a)[0]), int(self.cell_of(b)[0])
        nbrs: dict[int, list[int]] = {i: [] for i in range(self.n * self.n)}
        for u, v in self.edges:
            nbrs[u].append(v)
            nbrs[v].append(u)
        prev, todo = {start: -1}, deque([start])
        while todo:
            u = todo.popleft()
            for v in nbrs[u]:
                if v not in prev:
                    prev[v] = u
                    todo.append(v)
        path = [goal]
        while path[-1] != start:
            path.append(prev[path[-1]])
        return path[::-1]

    # -- dynamics -------------------------------------------------------------------------------

    def step_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Next positions [N, 2]: moves in SUBSTEPS, sliding along walls, inside the square."""
        move = np.clip(np.asarray(actions, dtype=np.float64), -1, 1) * self.max_step  # [N, 2]
        return slide(states, move, self.blocked, AGENT_RADIUS, SUBSTEPS).astype(np.float32)

    def _free_position(self, rng: np.random.Generator) -> np.ndarray:
        m = AGENT_RADIUS + 0.005
        while True:
            xy = rng.uniform(m, 1 - m, size=2)
            if not self.blocked(xy[None])[0]:
                return xy.astype(np.float32)

    def _random_state(self, rng: np.random.Generator) -> np.ndarray:
        return self._free_position(rng)

    def _checked_state(self, state: np.ndarray) -> np.ndarray:
        if np.any(state < 0) or np.any(state > 1) or self.blocked(state[None].astype(float))[0]:
            raise ValueError(f"MazeEnv state {state.tolist()} is not in free space")
        return state

    # -- render and task protocol -----------------------------------------------------------------

    def render(self) -> np.ndarray:
        """[size, size, 3] uint8: floor, walls, the agent as a soft red disc."""
        s = self.size
        img = np.broadcast_to(_FLOOR, (s, s, 3)).copy()
        for x0, x1, y0, y1 in self._boxes:
            img[(self._px > x0) & (self._px < x1) & (self._py > y0) & (self._py < y1)] = _WALL
        dist = np.hypot(self._px - self._state[0], self._py - self._state[1])
        img = paint(img, dist, AGENT_RADIUS, _AGENT, s)
        return np.round(img).astype(np.uint8)

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, goal) at cell centres ``min_cells`` or more cells apart along the maze
        (split ``far``), or two free positions anywhere (``any``)."""
        rng = np.random.default_rng(seed)
        if self.split == "any":
            return self._free_position(rng), self._free_position(rng)
        cells = self.n * self.n
        while True:
            a, b = (self.cell_centre(int(c)) for c in rng.integers(cells, size=2))
            if len(self.cell_path(a, b)) - 1 >= self.min_cells:
                return a, b
