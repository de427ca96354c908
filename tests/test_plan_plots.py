"""trajectories.png of an env without ``state_xy``: goal distance over every episode (one
scale for every task) and a strip of frames, instead of a map drawn from guessed positions."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from vjepa.config import load_config
from vjepa.world.envs import make_env
from vjepa.world.planning.mpc import run_plan, task_views
from vjepa.world.planning.report import Episode
from vjepa.world.planning.views import add_episode_views

SIZE = 32


class BarsEnv(gym.Env):
    """Two joint-like values in [0, 1], drawn as a vertical and a horizontal bar (no map, no
    ``state_xy``); the task protocol and batched dynamics for the oracle."""

    metadata = {"render_modes": ["rgb_array"]}
    success_distance = 0.08
    max_episode_steps = 12

    def __init__(self, render_mode: str | None = "rgb_array") -> None:
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.state = np.full(2, 0.5)

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return rng.uniform(0.1, 0.4, 2), rng.uniform(0.6, 0.9, 2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "state" in options:
            self.state = np.asarray(options["state"], dtype=np.float64).copy()
        return self.render(), {}

    def step_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.clip(states + actions, 0.0, 1.0)

    def state_distance(self, states: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.linalg.norm(states - np.asarray(goal)[None], axis=-1)

    def step(self, action):
        self.state = self.step_states(self.state[None], np.asarray(action)[None])[0]
        return self.render(), 0.0, False, False, {}

    def goal_distance(self, goal: np.ndarray) -> float:
        return float(self.state_distance(self.state[None], goal)[0])

    def get_state(self) -> np.ndarray:
        return self.state.copy()

    def render(self) -> np.ndarray:
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        a, b = (np.clip(self.state, 0, 1) * (SIZE - 1)).astype(int)
        img[:, a, 0] = 255  # the first value: a red column
        img[b, :, 2] = 255  # the second: a blue row
        return img


def test_goal_distance_plot_for_an_env_without_state_xy(tmp_path: Path) -> None:
    spec = f"{Path(__file__).resolve()}:BarsEnv"
    cfg = load_config(
        None,
        [
            f"run.dir={tmp_path}",
            f"plan.env={spec}",
            "plan.model=oracle",
            "plan.episodes=3",
            "plan.samples=64",
            "plan.iterations=3",
            "plan.max_steps=12",
            "plan.baselines=[random]",
        ],
    )
    report = run_plan(cfg)
    png = tmp_path / "trajectories.png"
    assert png.stat().st_size > 5000
    width, height = Image.open(png).size
    assert width > height  # three task columns
    # What it shows: the goal distance of every method at every recorded state, and 4 frames.
    env = make_env(spec)
    results: dict[str, list[Episode]] = {"oracle": [], "random": []}
    views = task_views(env, cfg.plan, [0])
    start, goal = views[0].start, views[0].goal
    states = [start.tolist(), ((start + goal) / 2).tolist(), goal.tolist()]
    results["oracle"].append(Episode("oracle", 0, True, 0.0, 2, 0.0, states))
    results["random"].append(Episode("random", 0, False, 0.5, 1, 0.0, states[:2]))
    (view,) = add_episode_views(env, views, results)
    full = float(np.linalg.norm(goal - start))
    assert view.distances["oracle"] == pytest.approx([full, full / 2, 0.0], abs=1e-6)
    assert len(view.distances["random"]) == 2
    assert [name for name, _ in view.strip] == ["start", "middle", "end", "goal"]
    assert np.array_equal(view.strip[2][1], view.strip[3][1])  # the oracle ended at the goal
    assert report["episodes"] == 3
