"""Push-T under stable-worldmodel's evaluation protocol (optional: needs ``gym-pusht``).

A round agent pushes a T-shaped block (pymunk physics, pygame renders; ``SDL_VIDEODRIVER=dummy``
on a headless machine). The adapter gives gym-pusht's ``PushTEnv`` the task protocol of
:mod:`vjepa.world.envs` with stable-worldmodel's conventions (``envs/pusht/env.py``,
``scripts/plan/config/pusht.yaml``, ``scripts/plan/eval_wm.py``):

- **Task**: a start on a trajectory of the data-collection policy and the goal ``goal_offset``
  (25; 50 / 75 for the long-horizon curve) steps later on the same trajectory.
- **Success** (swm's ``eval_state``): the 4 position values (agent x, y and block x, y, in the
  512-unit workspace) within 20 of the goal's in Euclidean norm, AND the block angle within
  pi / 9 of the goal's. ``goal_distance`` is ``max(pos_err / 20, angle_err / (pi / 9))``, so
  ``success_distance`` is 1.0 and the two are the same test.
- **Budget**: 50 env steps, ``max_episode_steps`` here (2 x ``goal_offset``: 100 / 150 at 50 / 75).
- **Data-collection policy** (:func:`pushing_policy`): random actions rarely touch the block,
  so the data would not show how it moves. swm evaluates on expert demonstrations
  (``pusht_expert_train``), which are not available offline. Ours is a scripted pusher with
  noise: it picks a random push direction, walks to the contact point behind the block (around
  it, not through it), pushes for a random number of steps, and repeats; Gaussian noise on
  every target. Tasks are drawn from the same policy. This makes the tasks different from the
  expert-trajectory goals of the published numbers: compare with care.
- Not the same: the state here is ``(agent_x, agent_y, block_x, block_y, block_angle)``
  (gym-pusht's; swm adds the agent's velocity, which a reset here sets to 0), the frames are
  ``size`` px renders without the action marker, and the goal zone gym-pusht draws stays fixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vjepa.world.adapted import AdaptedEnv, optional_module

POS_TOLERANCE = 20.0  # workspace units (swm: pos_diff < 20)
ANGLE_TOLERANCE = np.pi / 9  # swm: angle_diff < pi / 9 (the T has no rotational symmetry)


def _pusht_class():
    """gym-pusht's env class, imported on first use (an optional extra); pygame without a display."""
    pusht = optional_module(
        "gym_pusht.envs.pusht", "vjepa/PushT-v0", "gym-pusht", SDL_VIDEODRIVER="dummy"
    )
    return pusht.PushTEnv


def task_distance(states: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
    """swm's success test as one number [N]: < 1 exactly when both tolerances hold."""
    s = np.asarray(states, dtype=np.float64).reshape(-1, 5)
    g = np.asarray(goal_state, dtype=np.float64).reshape(5)
    pos = np.linalg.norm(s[:, :4] - g[:4], axis=1)
    ang = np.abs(s[:, 4] - g[4]) % (2 * np.pi)
    ang = np.minimum(ang, 2 * np.pi - ang)
    return np.maximum(pos / POS_TOLERANCE, ang / ANGLE_TOLERANCE)


def pushing_policy(state: np.ndarray, memory: dict, rng: np.random.Generator) -> np.ndarray:
    """The scripted, noisy pusher: an absolute agent target [2] in workspace units.

    ``memory`` carries the current push (direction, phase, steps left) between calls; start
    with {}. A push (a random direction; toward the workspace centre, give or take 35 degrees,
    once the block is over 110 units from it, so the block stays in view): walk around the block to the contact point behind it (via a point beside
    it, so the walk does not shove the block), then push through it for 8-24 steps; a walk that
    takes over 30 steps is given up for a new direction.
    """
    agent, block = np.asarray(state[:2], float), np.asarray(state[2:4], float)
    if memory.get("left", 0) <= 0 or memory.get("walk", 0) > 30:
        ang = rng.uniform(0, 2 * np.pi)
        off = np.array([256.0, 256.0]) - block
        if np.linalg.norm(off) > 110.0:  # far from the centre: push back toward it, roughly
            ang = np.arctan2(off[1], off[0]) + rng.normal(0.0, 0.6)
        memory.update(direction=np.array([np.cos(ang), np.sin(ang)]), left=int(rng.integers(8, 25)))
        memory.update(pushing=False, walk=0)
    d = memory["direction"]
    if not memory["pushing"]:
        memory["walk"] += 1
        behind = block - 80.0 * d  # the contact point behind the block for this push
        rel = agent - block
        if np.linalg.norm(agent - behind) < 25.0:
            memory["pushing"] = True
        else:
            perp = np.array([-d[1], d[0]])
            side = 1.0 if np.dot(rel, perp) >= 0 else -1.0
            # not yet behind the block: first to a point beside it, on the agent's side
            via = block + 110.0 * side * perp - 60.0 * d if np.dot(rel, d) > -50.0 else behind
            target = agent + np.clip(via - agent, -70.0, 70.0)
            return np.clip(target + rng.normal(0, 6.0, 2), 0.0, 512.0)
    memory["left"] -= 1
    target = agent + 45.0 * d  # push through the block
    return np.clip(target + rng.normal(0, 6.0, 2), 0.0, 512.0)


class PushTEnv(AdaptedEnv):
    """gym-pusht's Push-T with stable-worldmodel's task protocol; see the module doc."""

    state_dim = 5
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    success_distance = 1.0

    def __init__(self, **adapted: Any) -> None:
        """``adapted``: AdaptedEnv's render_mode, size, goal_offset, max_episode_steps."""
        super().__init__(**adapted)
        self._env = _pusht_class()(
            obs_type="state",
            render_mode="rgb_array",
            observation_width=self.size,
            observation_height=self.size,
        )
        self._env.reset(seed=0)

    @staticmethod
    def to_action(target: np.ndarray) -> np.ndarray:
        """An absolute workspace target [2] in [0, 512] as this env's action in [-1, 1]."""
        return (np.asarray(target, dtype=np.float32) / 256.0 - 1.0).clip(-1.0, 1.0)

    def get_state(self) -> np.ndarray:
        inner = self._env
        angle = float(inner.block.angle) % (2 * np.pi)
        return np.array([*inner.agent.position, *inner.block.position, angle], dtype=np.float32)

    def _set_state(self, state: np.ndarray) -> None:
        """Agent and block exactly at ``state``: the angle is set before the position
        (gym-pusht's own ``reset_to_state`` sets them in the legacy order, and rotating about
        the centre of mass then moves the block by up to ~70 units)."""
        inner = self._env
        inner.agent.position = [float(state[0]), float(state[1])]
        inner.agent.velocity = [0.0, 0.0]
        inner.block.angle = float(state[4])
        inner.block.position = [float(state[2]), float(state[3])]
        inner.block.velocity, inner.block.angular_velocity = [0.0, 0.0], 0.0
        inner.space.step(inner.dt)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and "state" in options:
            state = np.asarray(options["state"], dtype=np.float64).reshape(-1)
            if state.shape != (5,):
                raise ValueError(f"PushTEnv state must have 5 values, got {state.shape}")
            self._env.reset(seed=seed)
            self._set_state(state)
        else:
            self._env.reset(seed=int(self.np_random.integers(1 << 31)))
        return self.get_state(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = self._checked_action(action)
        # the agent's absolute target, scaled to [-1, 1] over the 512-unit workspace
        self._env.step((action + 1.0) * 256.0)
        return self.get_state(), 0.0, False, False, {}

    def render(self) -> np.ndarray:
        # the observation render: no action marker, so a frame depends on the state alone
        return np.ascontiguousarray(self._env._render(visualize=False), dtype=np.uint8)

    def goal_distance(self, goal_state: np.ndarray) -> float:
        return float(task_distance(self.get_state(), goal_state)[0])

    def state_distance(self, states: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
        return task_distance(states, goal_state)

    def collect_action(self, memory: dict, rng: np.random.Generator) -> np.ndarray:
        """The data-collection policy's next action (see :func:`pushing_policy`)."""
        return self.to_action(pushing_policy(self.get_state(), memory, rng))

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, goal) ``goal_offset`` pushing-policy steps apart on one trajectory; a pair
        that already meets the success test is drawn again (swm keeps such pairs; they only
        add the same free success to every method)."""
        rng = np.random.default_rng(seed)
        while True:
            self._env.reset(seed=int(rng.integers(1 << 31)))
            memory: dict = {}
            for _ in range(int(rng.integers(10, 60))):
                self.step(self.collect_action(memory, rng))
            start = self.get_state()
            for _ in range(self.goal_offset):
                self.step(self.collect_action(memory, rng))
            goal = self.get_state()
            if task_distance(start, goal)[0] >= self.success_distance:
                return start, goal

    def state_xy(self, states: np.ndarray) -> np.ndarray:
        """The block's pixel coordinates (column, row) [N, 2] in a render (for plots)."""
        s = np.asarray(states, dtype=np.float64).reshape(-1, 5)
        return s[:, 2:4] * (self.size / 512.0)
