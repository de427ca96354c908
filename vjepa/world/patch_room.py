"""Patch Room: one open room with a lava pool (a guardrail) and / or an ice patch (a world
that is not deterministic), both moving from task to task (pure numpy).

- **Lava** lies on the straight path from the start to the goal. The agent may walk into it:
  the step then reports ``info["violation"] = True`` (and :meth:`PatchRoomEnv.violation_states`
  says the same for a batch of states, for the oracle). A planner that only minimises the
  distance to the goal walks straight through; a guarded one goes around.
- **Ice**: a move that starts on the ice slips with probability ``slip_prob`` and carries the
  agent ``SLIP_STEPS`` extra steps in the same direction. The same frame and action then have
  two futures, which a deterministic predictor can only average. With lava, the ice rings the
  pool: cutting close past the lava over ice is a gamble that a risk-aware planner avoids.
  The real steps draw their slips from a generator of their own, seeded at every reset (from
  the reset's seed, or from the state it restores), so an episode from a given start slips the
  same way in every run and for every planner; batched ``step_states`` calls (the oracle's
  imagined rollouts) draw from another one and never consume the real world's coins.

The state is ``(x, y, lava_x, lava_y, lava_r, ice_x, ice_y, ice_r)`` (a radius 0: absent), so
``reset(options={"state": s})`` restores the scene. Frames: a light floor, a blue-white ice
disc, an orange lava disc and the red agent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vjepa.world.planar import PlanarEnv, paint, palette

AGENT_RADIUS = 0.035
LAVA_R_RANGE = (0.1, 0.14)
ICE_R_RANGE = (0.12, 0.16)  # alone; around lava the ice is the lava radius plus ICE_RING
ICE_RING = 0.09
SLIP_STEPS = 2
MIN_TASK_DISTANCE = 0.55

_FLOOR, _LAVA, _ICE, _AGENT = palette(
    (230, 230, 220), (240, 120, 20), (190, 225, 250), (200, 30, 40)
)


class PatchRoomEnv(PlanarEnv):
    """An open room with a lava pool on the way to the goal and / or an ice patch that slips."""

    state_dim = 8
    state_desc = "8 values (x, y, lava_x, lava_y, lava_r, ice_x, ice_y, ice_r)"

    def __init__(
        self,
        lava: bool = True,
        ice: bool = False,
        slip_prob: float = 0.5,
        **planar: Any,
    ) -> None:
        if not (lava or ice):
            raise ValueError("PatchRoomEnv needs lava, ice or both")
        if not 0.0 <= slip_prob <= 1.0:
            raise ValueError(f"slip_prob must be within [0, 1], got {slip_prob}")
        self.lava, self.ice, self.slip_prob = bool(lava), bool(ice), float(slip_prob)
        start, _ = self._task(np.random.default_rng(0))
        super().__init__(start, **planar)
        self._coins = np.random.default_rng(0)  # the real steps' slips (reseeded by reset)
        self._imagined = np.random.default_rng(1)  # step_states without rng (the oracle)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        obs, info = super().reset(seed=seed, options=options)
        if options and "state" in options:  # the coins follow the restored state (and seed)
            words = np.frombuffer(self._state.astype(np.float32).tobytes(), np.uint32)
            self._coins = np.random.default_rng([*words.tolist(), *([seed] if seed else [])])
        else:
            self._coins = np.random.default_rng(self.np_random.integers(1 << 63))
        return obs, info

    # -- tasks ----------------------------------------------------------------------------------

    def _task(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A start and a goal at least MIN_TASK_DISTANCE apart, the patches between them."""
        m = AGENT_RADIUS + 0.02
        while True:
            start, goal = rng.uniform(m, 1 - m, size=2), rng.uniform(m, 1 - m, size=2)
            if np.linalg.norm(goal - start) >= MIN_TASK_DISTANCE:
                break
        centre = start + rng.uniform(0.4, 0.6) * (goal - start)
        lava_r = rng.uniform(*LAVA_R_RANGE) if self.lava else 0.0
        if self.ice:
            ice_r = lava_r + ICE_RING if self.lava else rng.uniform(*ICE_R_RANGE)
        else:
            ice_r = 0.0
        # keep the start and the goal off both patches
        room = max(lava_r, ice_r) + AGENT_RADIUS + 0.01
        for end in (start, goal):
            gap = np.linalg.norm(end - centre)
            if gap < room:  # shrink the patches off a start or goal that lies too close
                lava_r, ice_r = lava_r * gap / room, ice_r * gap / room
        scene = [centre[0], centre[1], lava_r, centre[0], centre[1], ice_r]
        return (
            np.asarray([*start, *scene], dtype=np.float32),
            np.asarray([*goal, *scene], dtype=np.float32),
        )

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, goal) in one scene; the lava and / or ice lie on the straight path between."""
        return self._task(np.random.default_rng(seed))

    def _random_state(self, rng: np.random.Generator) -> np.ndarray:
        start, _ = self._task(rng)
        m = AGENT_RADIUS + 0.01
        start[:2] = rng.uniform(m, 1 - m, size=2)  # anywhere, lava included: data sees hazards
        return start

    def _checked_state(self, state: np.ndarray) -> np.ndarray:
        if np.any(state < 0) or np.any(state > 1):
            raise ValueError(f"PatchRoomEnv state {state.tolist()} is outside the unit square")
        return state

    # -- dynamics -------------------------------------------------------------------------------

    def on_ice(self, states: np.ndarray) -> np.ndarray:
        """True [N] where the agent stands on the ice."""
        s = np.asarray(states, dtype=np.float64).reshape(-1, self.state_dim)
        return np.hypot(s[:, 0] - s[:, 5], s[:, 1] - s[:, 6]) < s[:, 7]

    def stochastic_states(self, states: np.ndarray) -> np.ndarray:
        """True [N] where the next step may branch (on the ice, when a slip is neither
        impossible nor certain): the steps where a prediction is checked against its branches."""
        s = np.asarray(states, dtype=np.float64).reshape(-1, self.state_dim)
        if not (self.ice and 0.0 < self.slip_prob < 1.0):
            return np.zeros(len(s), dtype=bool)
        return self.on_ice(s)

    def violation_states(self, states: np.ndarray) -> np.ndarray:
        """True [N] where the agent's centre is in the lava (the forbidden states)."""
        s = np.asarray(states, dtype=np.float64).reshape(-1, self.state_dim)
        return np.hypot(s[:, 0] - s[:, 2], s[:, 1] - s[:, 3]) < s[:, 4]

    def step_states(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Next states [N, 8] from states [N, 8] and actions [N, 2]. On ice a move slips with
        probability ``slip_prob`` (draws from ``rng``, else the imagined rollouts' generator)."""
        s = np.asarray(states, dtype=np.float64)
        move = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0) * self.max_step
        if self.ice and self.slip_prob > 0:
            gen = self._imagined if rng is None else rng
            slips = self.on_ice(s) & (gen.random(len(s)) < self.slip_prob)  # [N]
            move = move * (1.0 + SLIP_STEPS * slips[:, None])
        out = s.copy()
        out[:, :2] = np.clip(s[:, :2] + move, AGENT_RADIUS, 1.0 - AGENT_RADIUS)
        return out.astype(np.float32)

    def _next_state(self, action: np.ndarray) -> np.ndarray:
        return self.step_states(self._state[None], action, rng=self._coins)[0]  # real coins

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["violation"] = bool(self.violation_states(self._state[None])[0])
        return obs, reward, terminated, truncated, info

    # -- render ---------------------------------------------------------------------------------

    def render(self) -> np.ndarray:
        """[size, size, 3] uint8: floor, ice, lava, agent."""
        s, st = self.size, self._state.astype(np.float64)
        img = np.broadcast_to(_FLOOR, (s, s, 3)).copy()  # [H, W, 3]
        if st[7] > 0:
            img = paint(img, np.hypot(self._px - st[5], self._py - st[6]), st[7], _ICE, s)
        if st[4] > 0:
            img = paint(img, np.hypot(self._px - st[2], self._py - st[3]), st[4], _LAVA, s)
        img = paint(img, np.hypot(self._px - st[0], self._py - st[1]), AGENT_RADIUS, _AGENT, s)
        return np.round(img).astype(np.uint8)
