"""What an episode takes from the env: the step budget (plan.max_steps, else the env's
max_episode_steps, else plan.fallback_steps), plan.goal_offset, and the env's own
data-collection policy in `vjepa collect`."""

import gymnasium as gym
import numpy as np
import pytest

from vjepa.config import ConfigError, load_config
from vjepa.world.collect import collect
from vjepa.world.envs import make_env
from vjepa.world.planning.budget import apply_goal_offset, episode_budget
from vjepa.world.planning.mpc import run_plan
from vjepa.world.trajectories import load_trajectories


def _plan(*overrides):
    return load_config(None, list(overrides), command="plan").plan


class OffsetEnv(gym.Env):
    """A 1-D walk whose tasks put the goal goal_offset steps of +0.1 ahead; it declares no
    budget, and collects with its own policy (always +1)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode="rgb_array"):
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(0, 255, shape=(8, 8, 3), dtype=np.uint8)
        self.goal_offset, self.success_distance, self.x = 3, 0.05, 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(options["state"][0]) if options and "state" in options else 0.0
        return self.render(), {}

    def step(self, action):
        self.x += 0.1 * float(np.clip(action[0], -1, 1))
        return self.render(), 0.0, False, False, {}

    def render(self):
        img = np.zeros((8, 8, 3), np.uint8)
        img[:, int(np.clip(self.x, 0, 0.99) * 8)] = 255
        return img

    def get_state(self):
        return np.array([self.x], np.float32)

    def goal_distance(self, goal):
        return abs(self.x - float(goal[0]))

    def sample_task(self, seed):
        return np.array([0.0], np.float32), np.array([0.1 * self.goal_offset], np.float32)

    def collect_action(self, memory, rng):
        memory["n"] = memory.get("n", 0) + 1
        return np.array([1.0], np.float32)


def test_budget_comes_from_the_key_then_the_env_then_the_fallback():
    maze = make_env("vjepa/Maze-v0")
    assert episode_budget(maze, _plan()) == (200, "env")
    assert episode_budget(maze, _plan("plan.max_steps=30")) == (30, "plan.max_steps")
    rooms = make_env("vjepa/TwoRooms-v0")  # declares none
    assert episode_budget(rooms, _plan("plan.fallback_steps=77")) == (77, "plan.fallback_steps")
    # a gymnasium registration's max_episode_steps counts as declared
    gym.register("vjepa-test/Offset-v0", entry_point=OffsetEnv, max_episode_steps=9)
    try:
        assert episode_budget(gym.make("vjepa-test/Offset-v0"), _plan()) == (9, "env")
    finally:
        gym.registry.pop("vjepa-test/Offset-v0")


def test_goal_offset_is_set_before_tasks_and_reported(tmp_path):
    env = OffsetEnv()
    assert apply_goal_offset(env, _plan()) == 3
    assert apply_goal_offset(env, _plan("plan.goal_offset=7")) == 7
    assert env.sample_task(0)[1][0] == pytest.approx(0.7)
    with pytest.raises(ConfigError, match="plan.goal_offset"):
        apply_goal_offset(make_env("vjepa/Maze-v0"), _plan("plan.goal_offset=5"))
    spec = f"{__file__}:OffsetEnv"
    report = run_plan(
        load_config(
            None,
            [
                f"run.dir={tmp_path}",
                f"plan.env={spec}",
                "plan.goal_offset=2",
                "plan.episodes=1",
                "plan.fallback_steps=5",
                "plan.samples=16",
                "plan.elites=4",
                "plan.horizon=4",
                "plan.baselines=[]",
                "plan.plots=false",
            ],
        )
    )
    assert report["goal_offset"] == 2 and report["levels"] == 1
    assert (report["max_steps"], report["max_steps_source"]) == (5, "plan.fallback_steps")
    assert report["success_rate"] == 100.0  # two steps of +0.1 within 5


def test_collect_uses_the_envs_own_policy(tmp_path):
    collect(f"{__file__}:OffsetEnv", tmp_path / "own", episodes=2, steps=6, progress=False)
    trajs, _ = load_trajectories(str(tmp_path / "own"), "auto")
    assert all(np.all(t.actions == 1.0) for t in trajs)  # every action from collect_action
    assert np.allclose(trajs[0].states[:, 0], 0.1 * np.arange(6), atol=1e-6)
    assert trajs[0].meta["policy"] == "env.collect_action"
    collect("vjepa/TwoRooms-v0", tmp_path / "rnd", episodes=1, steps=6, progress=False)
    trajs, _ = load_trajectories(str(tmp_path / "rnd"), "auto")
    assert trajs[0].meta["policy"] == "random" and len(np.unique(trajs[0].actions)) > 2
