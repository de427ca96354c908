"""The shipped envs whose scene varies per task (Varied Rooms), with hazards and ice (Patch
Room), and the long-horizon maze: protocol, dynamics and what each is built to test."""

from __future__ import annotations

import numpy as np
import pytest

from vjepa.world.envs import SHIPPED_ENVS, check_protocol, make_env
from vjepa.world.maze import MazeEnv
from vjepa.world.patch_room import PatchRoomEnv
from vjepa.world.varied_rooms import VariedRoomsEnv, blocked


@pytest.mark.parametrize("env_id", sorted(SHIPPED_ENVS))
def test_protocol_and_reset_to_state(env_id):
    env = make_env(env_id)
    check_protocol(env, env_id)
    base = env.unwrapped
    start, goal = base.sample_task(7)
    env.reset(options={"state": start})
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    np.testing.assert_allclose(base.get_state(), start)
    env.reset(options={"state": goal})
    assert base.goal_distance(goal) == pytest.approx(0.0)
    env.reset(options={"state": start})
    np.testing.assert_array_equal(env.render(), frame)  # the whole scene is in the state
    assert base.goal_distance(goal) > base.success_distance


def test_varied_rooms_scene_changes_per_task_and_the_wall_blocks():
    env = VariedRoomsEnv()
    scenes = np.stack([env.sample_task(s)[0][2:] for s in range(20)])
    assert np.unique(scenes[:, 0]).size == 20  # a wall position per task
    assert np.unique(scenes[:, 3]).size == 20  # a distractor position per task
    start, goal = env.sample_task(3)
    wall_x = start[2]
    assert (start[0] < wall_x) != (goal[0] < wall_x)  # different rooms: the task needs the door
    # walking straight across at a height outside the door stops at the wall
    door_y, door_half = start[3], start[4]
    y = door_y + door_half + 0.1 if door_y + door_half + 0.1 < 0.95 else door_y - door_half - 0.1
    side = -1.0 if start[0] < wall_x else 1.0
    state = start.copy()
    state[:2] = [wall_x + side * 0.15, y]
    env.reset(options={"state": state})
    for _ in range(20):
        env.step(np.array([-side, 0.0]))
    assert np.sign(env.get_state()[0] - wall_x) == side
    # through the door it passes
    state[:2] = [wall_x + side * 0.15, door_y]
    env.reset(options={"state": state})
    for _ in range(20):
        env.step(np.array([-side, 0.0]))
    assert np.sign(env.get_state()[0] - wall_x) == -side


def test_varied_rooms_distractor_is_scenery():
    env = VariedRoomsEnv()
    start, _ = env.sample_task(5)
    state = start.copy()
    state[:2] = start[5:7]  # on the distractor's centre
    if blocked(state[None, :2].astype(float), state[None, 2:].astype(float))[0]:
        pytest.skip("the drawn distractor lies on the wall")
    away = 1.0 if state[0] > start[2] else -1.0  # away from the wall
    env.reset(options={"state": state})
    moved = env.step(np.array([away, 0.0]))[0]
    assert moved[0] - state[0] == pytest.approx(away * env.max_step, abs=1e-6)  # not blocked
    plain = VariedRoomsEnv(distractor=False)
    assert np.all(plain.sample_task(5)[0][7] == 0.0)
    blue = np.array([70, 150, 230])
    env.reset(options={"state": start})
    plain.reset(options={"state": plain.sample_task(5)[0]})
    assert (np.abs(env.render().astype(int) - blue).sum(-1) < 10).sum() > 100
    assert (np.abs(plain.render().astype(int) - blue).sum(-1) < 10).sum() == 0


def test_lava_lies_on_the_straight_path_and_is_reported():
    env = PatchRoomEnv()
    for seed in range(10):
        start, goal = env.sample_task(seed)
        a, b, c, r = start[:2], goal[:2], start[2:4], start[4]
        t = np.clip(np.dot(c - a, b - a) / np.dot(b - a, b - a), 0, 1)
        assert np.linalg.norm(a + t * (b - a) - c) < r  # straight line crosses the pool
        assert not env.violation_states(start[None])[0] and not env.violation_states(goal[None])[0]
    start, goal = env.sample_task(0)
    env.reset(options={"state": start})
    direction = (goal[:2] - start[:2]) / np.linalg.norm(goal[:2] - start[:2])
    flags = [env.step(direction)[4]["violation"] for _ in range(30)]
    assert any(flags) and not flags[0]
    states = np.stack([start, goal])
    states[1, :2] = start[2:4]  # the pool's centre
    np.testing.assert_array_equal(env.violation_states(states), [False, True])


def test_ice_branches_the_same_state_and_action():
    env = PatchRoomEnv(lava=False, ice=True, slip_prob=0.5)
    start, _ = env.sample_task(2)
    on_ice = start.copy()
    on_ice[:2] = start[5:7]
    rng = np.random.default_rng(0)
    nxt = env.step_states(np.repeat(on_ice[None], 400, 0), np.ones((400, 2)), rng=rng)
    moves = np.round((nxt[:, 0] - on_ice[0]).astype(np.float64), 3)
    assert np.unique(moves).tolist() == [0.05, 0.15]  # one step, or slipped two more
    assert 0.4 < np.mean(moves > 0.1) < 0.6
    off = start.copy()  # off the ice nothing slips
    nxt = env.step_states(np.repeat(off[None], 50, 0), np.ones((50, 2)) * 0.2, rng=rng)
    assert np.unique(np.round(nxt[:, 0] - off[0], 4)).size == 1
    assert not PatchRoomEnv(lava=True).ice
    np.testing.assert_array_equal(env.stochastic_states(np.stack([on_ice, off])), [True, False])
    assert not PatchRoomEnv(lava=True).stochastic_states(on_ice[None]).any()


def test_real_slips_follow_the_reset_not_the_imagined_rollouts():
    # The same start slips the same way in every run, whatever the oracle imagined meanwhile.
    start, _ = PatchRoomEnv(lava=False, ice=True).sample_task(3)
    on_ice = start.copy()
    on_ice[:2] = start[5:7]

    def run(env, imagine: bool) -> np.ndarray:
        env.reset(options={"state": on_ice})
        xs = []
        for _ in range(8):
            if imagine:
                env.step_states(np.repeat(on_ice[None], 50, 0), np.ones((50, 2)))
            xs.append(env.step(np.array([0.3, 0.0], dtype=np.float32))[0][0])
        return np.diff(np.array([on_ice[0], *xs]))

    a = run(PatchRoomEnv(lava=False, ice=True), False)
    b = run(PatchRoomEnv(lava=False, ice=True), True)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(np.round(a, 4))) == 2  # both branches happened: 0.015 and 0.045


def test_maze_tasks_need_the_long_way_round():
    env = MazeEnv()
    assert env.max_episode_steps >= 200
    stuck = 0
    for seed in range(8):
        start, goal = env.sample_task(seed)
        path = env.cell_path(start, goal)
        assert len(path) - 1 >= env.min_cells
        # greedy steps on the straight-line distance (what a flat planner sees) ...
        state = start[None].astype(np.float32)
        for _ in range(env.max_episode_steps):
            d = goal - state[0]
            state = env.step_states(state, (d / max(np.abs(d).max(), 1e-9))[None])
        stuck += env.state_distance(state, goal)[0] > env.success_distance
        # ... while following the path's cell centres (oracle subgoals) reaches the goal
        state = start[None].astype(np.float32)
        for cell in path[1:]:
            target = env.cell_centre(cell)
            for _ in range(40):
                d = target - state[0]
                state = env.step_states(state, np.clip(d / env.max_step, -1, 1)[None])
        assert env.state_distance(state, goal)[0] < env.success_distance
    assert stuck >= 4  # most tasks defeat the greedy straight line
