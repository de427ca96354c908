"""Planar reaching arm: a two-link arm seen from above (pure numpy).

The second, different env of the world-model chain. The state is the two joint angles
``(q1, q2)`` in radians; an action is a joint-angle change in ``[-1, 1]^2`` scaled by
``max_step`` radians (kinematic control, as a position-controlled arm). The elbow is limited
to ``|q2| <= ELBOW_LIMIT`` so the arm never folds onto itself. A task is a start and a goal
configuration; the goal distance is the Euclidean distance between the fingertips (so the
goal image shows where the hand must go). Frames are 64x64 renders: a grey base, two blue
links and a yellow fingertip, all with soft edges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vjepa.world.planar import PlanarEnv, paint, palette

LINK1, LINK2 = 0.24, 0.2
BASE = np.array([0.5, 0.5])
ELBOW_LIMIT = 2.8
LINK_HALF_WIDTH = 0.022
TIP_RADIUS = 0.035

_FLOOR, _LINK, _TIP, _BASE = palette((235, 235, 235), (40, 80, 200), (240, 190, 20), (90, 90, 90))


def fingertip(states: np.ndarray) -> np.ndarray:
    """Fingertip positions [N, 2] of joint angles [N, 2] (world units, base at the centre)."""
    q = np.asarray(states, dtype=np.float64).reshape(-1, 2)
    q12 = q[:, 0] + q[:, 1]
    x = BASE[0] + LINK1 * np.cos(q[:, 0]) + LINK2 * np.cos(q12)
    y = BASE[1] + LINK1 * np.sin(q[:, 0]) + LINK2 * np.sin(q12)
    return np.stack([x, y], axis=1)


def _elbow(q: np.ndarray) -> np.ndarray:
    return BASE + LINK1 * np.array([np.cos(q[0]), np.sin(q[0])])


def _segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre [H, W] to the segment a-b."""
    ab = b - a
    t = ((px - a[0]) * ab[0] + (py - a[1]) * ab[1]) / max(float(ab @ ab), 1e-12)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(px - (a[0] + t * ab[0]), py - (a[1] + t * ab[1]))


class ReacherEnv(PlanarEnv):
    """A two-link planar arm reaching a goal configuration; 64x64 renders."""

    state_desc = "2 joint angles"
    default_max_step = 0.15
    default_success_distance = 0.04

    def __init__(self, **planar: Any) -> None:
        high = np.array([np.pi, ELBOW_LIMIT], dtype=np.float32)
        state = np.zeros(2, dtype=np.float32)
        super().__init__(state, low=-high, high=high, **planar)

    def step_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Next joint angles [N, 2] from angles [N, 2] and actions [N, 2] (clipped to [-1, 1])."""
        q = np.asarray(states, dtype=np.float64) + self.max_step * np.clip(
            np.asarray(actions, dtype=np.float64), -1.0, 1.0
        )  # [N, 2]
        q[:, 0] = (q[:, 0] + np.pi) % (2 * np.pi) - np.pi  # the shoulder turns freely
        q[:, 1] = np.clip(q[:, 1], -ELBOW_LIMIT, ELBOW_LIMIT)
        return q.astype(np.float32)

    def state_distance(self, states: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
        """Fingertip distances [N] from joint angles [N, 2] to the goal configuration [2]."""
        return np.linalg.norm(fingertip(states) - fingertip(goal_state), axis=-1)

    def _random_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.array(
            [rng.uniform(-np.pi, np.pi), rng.uniform(-ELBOW_LIMIT, ELBOW_LIMIT)], dtype=np.float32
        )

    def _checked_state(self, state: np.ndarray) -> np.ndarray:
        # Any angles are a configuration: wrap the shoulder, clip the elbow (a zero move).
        return self.step_states(state[None], np.zeros((1, 2)))[0]

    def render(self) -> np.ndarray:
        """[size, size, 3] uint8: base, two links and the fingertip with soft edges."""
        s = self.size
        img = np.broadcast_to(_FLOOR, (s, s, 3)).copy()  # [H, W, 3]
        q = self._state.astype(np.float64)
        elbow, tip = _elbow(q), fingertip(q[None])[0]
        px, py = self._px, self._py
        img = paint(img, _segment_distance(px, py, BASE, elbow), LINK_HALF_WIDTH, _LINK, s)
        img = paint(img, _segment_distance(px, py, elbow, tip), LINK_HALF_WIDTH, _LINK, s)
        img = paint(img, np.hypot(px - BASE[0], py - BASE[1]), 0.03, _BASE, s)
        img = paint(img, np.hypot(px - tip[0], py - tip[1]), TIP_RADIUS, _TIP, s)
        return np.round(img).astype(np.uint8)

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, goal) joint angles with fingertips at least 0.15 apart (a real move)."""
        rng = np.random.default_rng(seed)
        while True:
            start, goal = self._random_state(rng), self._random_state(rng)
            if self.state_distance(start[None], goal)[0] >= 0.15:
                return start, goal

    def state_xy(self, states: np.ndarray) -> np.ndarray:
        """Pixel coordinates (column, row) [N, 2] of the fingertip (for plots)."""
        tip = fingertip(states)
        return np.stack([tip[:, 0] * self.size, (1.0 - tip[:, 1]) * self.size], axis=1)
