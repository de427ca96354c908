"""Env naming (gymnasium id | path/file.py:Class | module:Class), bad specs, the task protocol."""

from __future__ import annotations

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from vjepa.cli import main  # noqa: E402
from vjepa.world.envs import (  # noqa: E402
    REACHER_ID,
    TWO_ROOMS_ID,
    EnvSpecError,
    check_protocol,
    make_env,
    reset_to,
)
from vjepa.world.two_rooms import room_of  # noqa: E402

# A user's env in a file of its own: a point on a line, with the task protocol.
LINE_ENV = """
import gymnasium as gym
import numpy as np


class LineEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(self, render_mode="rgb_array"):
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.success_distance = 0.05
        self.x = np.zeros(1, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = np.asarray(options["state"] if options else [0.5], dtype=np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.x = np.clip(self.x + 0.1 * np.asarray(action, dtype=np.float32), 0, 1)
        return self.x.copy(), 0.0, False, False, {}

    def render(self):
        img = np.zeros((8, 16, 3), np.uint8)
        img[:, int(self.x[0] * 15)] = 255
        return img

    def get_state(self):
        return self.x.copy()

    def sample_task(self, seed):
        rng = np.random.default_rng(seed)
        return rng.uniform(0, 1, 1).astype(np.float32), rng.uniform(0, 1, 1).astype(np.float32)

    def goal_distance(self, goal):
        return float(abs(self.x[0] - goal[0]))


class NotAnEnv:
    pass


class DiscreteEnv(LineEnv):
    def __init__(self, render_mode="rgb_array"):
        super().__init__(render_mode)
        self.action_space = gym.spaces.Discrete(3)
"""


@pytest.fixture()
def line_file(tmp_path):
    path = tmp_path / "line_env.py"
    path.write_text(LINE_ENV)
    return path


def test_env_naming_three_forms(line_file):
    by_id = make_env(TWO_ROOMS_ID)
    by_module = make_env("vjepa.world.reacher:ReacherEnv")
    by_file = make_env(f"{line_file}:LineEnv")
    assert type(by_id.unwrapped).__name__ == "TwoRoomsEnv"
    assert type(by_module.unwrapped).__name__ == "ReacherEnv"
    assert type(by_file.unwrapped).__name__ == "LineEnv"
    for env, shape in ((by_id, (64, 64, 3)), (by_module, (64, 64, 3)), (by_file, (8, 16, 3))):
        env.reset(seed=0)
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.shape == shape
        assert isinstance(env.action_space, gym.spaces.Box)
        check_protocol(env)
    # A registered id is also a plain gymnasium id once registered.
    assert type(gym.make(REACHER_ID).unwrapped).__name__ == "ReacherEnv"


@pytest.mark.parametrize(
    "spec, words",
    [
        ("vjepa/NoSuchEnv-v0", ["vjepa/NoSuchEnv-v0", "registered gymnasium id"]),
        ("missing_dir/env.py:Env", ["missing_dir/env.py", "not found"]),
        ("vjepa.world.no_such_module:Env", ["cannot import module", "no_such_module"]),
        ("vjepa.world.two_rooms:NoSuchClass", ["no attribute", "NoSuchClass"]),
        ("{file}:NotAnEnv", ["NotAnEnv", "not a gymnasium.Env"]),
        ("{file}:DiscreteEnv", ["Box", "Discrete"]),
        ("", ["non-empty"]),
    ],
)
def test_bad_env_spec_is_named(spec, words, line_file):
    spec = spec.format(file=line_file)
    with pytest.raises(EnvSpecError) as err:
        make_env(spec)
    for word in words:
        assert word in str(err.value)


def test_bad_env_spec_cli_exit_code(tmp_path, capsys):
    code = main(
        ["collect", "vjepa/NoSuchEnv-v0", "--episodes", "1", "--steps", "2"]
        + ["--out", str(tmp_path / "x")]
    )
    assert code == 2
    assert "vjepa/NoSuchEnv-v0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing written


def test_missing_protocol_is_named():
    class Bare(gym.Env):
        action_space = gym.spaces.Box(-1, 1, (2,))
        render_mode = "rgb_array"

    with pytest.raises(EnvSpecError) as err:
        check_protocol(Bare())
    assert "sample_task" in str(err.value) and "goal_distance" in str(err.value)


@pytest.mark.parametrize("spec", [TWO_ROOMS_ID, REACHER_ID])
def test_task_protocol(spec):
    env = make_env(spec)
    base = env.unwrapped
    start, goal = base.sample_task(7)
    again = base.sample_task(7)
    np.testing.assert_array_equal(start, again[0])  # a task is a pure function of its seed
    np.testing.assert_array_equal(goal, again[1])
    assert not np.array_equal(start, base.sample_task(8)[0])
    goal_frame = reset_to(env, goal)
    assert base.goal_distance(goal) == pytest.approx(0.0, abs=1e-6)
    frame = reset_to(env, start)
    np.testing.assert_allclose(base.get_state(), start, atol=1e-6)
    assert base.goal_distance(goal) > base.success_distance
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert np.abs(frame.astype(int) - goal_frame.astype(int)).sum() > 0  # the goal is visible
    # The batched dynamics the oracle uses equal the env's own steps.
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (15, 2)).astype(np.float32)
    s = start[None]
    for a in actions:
        env.step(a)
        s = base.step_states(s, a[None])
    np.testing.assert_allclose(base.get_state(), s[0], atol=1e-6)


def test_two_rooms_hard_split_and_wall():
    env = make_env(TWO_ROOMS_ID)
    base = env.unwrapped
    for seed in range(30):
        start, goal = base.sample_task(seed)
        assert room_of(start) != room_of(goal)  # the hard split: always through the door
    # Pushing right below the door: the wall holds the agent in the left room.
    reset_to(env, np.array([0.3, 0.15], np.float32))
    for _ in range(20):
        env.step(np.array([1.0, 0.0], np.float32))
    assert room_of(base.get_state()) == 0 and base.get_state()[0] == pytest.approx(0.44, abs=0.01)
    # Level with the door it passes into the right room; a step moves at most max_step.
    reset_to(env, np.array([0.3, 0.5], np.float32))
    before = base.get_state()
    env.step(np.array([1.0, 1.0], np.float32))
    assert np.abs(base.get_state() - before).max() <= base.max_step + 1e-6
    for _ in range(20):
        env.step(np.array([1.0, 0.0], np.float32))
    assert room_of(base.get_state()) == 1
