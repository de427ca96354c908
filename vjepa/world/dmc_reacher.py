"""DMC Reacher under stable-worldmodel's evaluation protocol (optional: needs ``dm-control``).

The field's flat-planner table (LeWM 86, DINO-WM 79, PLDM 78 %) is measured on
``swm/ReacherDMControl-v0`` with the ``qpos_match`` task. This adapter gives dm_control's
reacher the task protocol of :mod:`vjepa.world.envs` with the same conventions, read from
stable-worldmodel's code (``scripts/plan/config/reacher.yaml``, ``scripts/plan/eval_wm.py``,
``envs/dmcontrol/custom_tasks/reacher.py``):

- **Data-collection policy**: uniform random actions in ``[-1, 1]^2`` (swm's ``RandomPolicy``;
  its dataset ``dmc/reacher_random`` has 200-step episodes).
- **Task**: a start on a random-policy trajectory and the goal ``goal_offset`` = 25 steps later
  on the SAME trajectory (swm picks a dataset row with ``step_idx <= len - 26`` and the row 25
  steps later). Here the trajectory is generated from the task seed: a reset with random joint
  angles, then ``U[0, 150)`` random steps to the start, then 25 more to the goal. The start
  keeps its joint velocities (swm sets qpos and qvel).
- **Success**: every joint within 0.05 rad of the goal's joint angles (``qpos_threshold``;
  the shoulder angle wraps at 2 pi). ``goal_distance`` is therefore the largest wrapped joint
  error, and ``success_distance`` 0.05.
- **Budget**: 50 env steps (``eval_budget``), ``max_episode_steps`` here (2 x ``goal_offset``).
- **Frames**: the arm rendered by MuJoCo (``MUJOCO_GL=egl`` on a headless machine) at
  ``size x size`` from the suite's fixed camera, the target sphere made invisible (swm renders
  ``render_target=0``): the goal is an image of the arm, not a marker.
- Not the same: swm renders 224 px and plans with frameskip 5 (horizon 5 blocks); ours renders
  ``size`` px and takes ``plan.*`` settings. The state is ``(q_shoulder, q_wrist, v_shoulder,
  v_wrist)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vjepa.world.adapted import AdaptedEnv, optional_module

QPOS_THRESHOLD = 0.05  # rad, per joint (swm's qpos_match task)


def _suite():
    """dm_control's suite, imported on first use (it is an optional extra)."""
    # MUJOCO_GL: osmesa fails on these machines; egl renders
    return optional_module("dm_control.suite", "vjepa/DMCReacher-v0", "dm-control", MUJOCO_GL="egl")


def wrapped_joint_error(q: np.ndarray, goal_q: np.ndarray) -> np.ndarray:
    """Largest absolute joint-angle difference [N] between q [N, 2] and goal_q [2], the angles
    wrapped into [-pi, pi]."""
    d = (np.asarray(q, dtype=np.float64) - np.asarray(goal_q, dtype=np.float64) + np.pi) % (
        2 * np.pi
    ) - np.pi
    return np.abs(d).max(axis=-1)


class DMCReacherEnv(AdaptedEnv):
    """dm_control reacher with stable-worldmodel's task protocol; see the module doc."""

    state_dim = 4
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    success_distance = QPOS_THRESHOLD

    def __init__(self, **adapted: Any) -> None:
        """``adapted``: AdaptedEnv's render_mode, size, goal_offset, max_episode_steps."""
        super().__init__(**adapted)
        self._env = _suite().load(
            "reacher",
            "hard",
            task_kwargs={"random": 0, "time_limit": float("inf")},
        )
        self._env.reset()
        physics = self._env.physics
        physics.named.model.geom_rgba["target", 3] = 0.0  # the goal is an image of the arm

    # -- state -----------------------------------------------------------------------------------

    def get_state(self) -> np.ndarray:
        data = self._env.physics.data
        return np.concatenate([data.qpos, data.qvel]).astype(np.float32)

    def _set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.shape != (4,):
            raise ValueError(f"DMCReacherEnv state must have 4 values, got {state.shape}")
        physics = self._env.physics
        with physics.reset_context():
            physics.data.qpos[:] = state[:2]
            physics.data.qvel[:] = state[2:]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and "state" in options:
            self._set_state(options["state"])
        else:
            self._random_pose(self.np_random)
        return self.get_state(), {}

    def _random_pose(self, rng: np.random.Generator) -> None:
        q = np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-2.79, 2.79)])
        self._set_state(np.concatenate([q, np.zeros(2)]))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = self._checked_action(action)
        self._env.step(action)
        return self.get_state(), 0.0, False, False, {}

    def render(self) -> np.ndarray:
        frame = self._env.physics.render(self.size, self.size, camera_id=0)
        return np.ascontiguousarray(frame, dtype=np.uint8)

    # -- task protocol ---------------------------------------------------------------------------

    def goal_distance(self, goal_state: np.ndarray) -> float:
        return float(wrapped_joint_error(self.get_state()[None, :2], goal_state[:2])[0])

    def state_distance(self, states: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
        return wrapped_joint_error(np.asarray(states)[:, :2], np.asarray(goal_state)[:2])

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, goal): the goal is ``goal_offset`` random-policy steps after the start on one
        trajectory; the env is left in the goal state (callers reset to the start)."""
        rng = np.random.default_rng(seed)
        self._random_pose(rng)
        for _ in range(int(rng.integers(0, 150))):
            self._env.step(rng.uniform(-1.0, 1.0, size=2))
        start = self.get_state()
        for _ in range(self.goal_offset):
            self._env.step(rng.uniform(-1.0, 1.0, size=2))
        return start, self.get_state()

    def step_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """True next states [N, 4] (sequential MuJoCo steps; restores the current state)."""
        keep = self.get_state()
        out = np.empty((len(states), 4), dtype=np.float32)
        for i, (s, a) in enumerate(zip(np.asarray(states), np.asarray(actions))):
            self._set_state(s)
            self._env.step(np.clip(a, -1.0, 1.0))
            out[i] = self.get_state()
        self._set_state(keep)
        return out
