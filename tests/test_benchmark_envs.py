"""Push-T and DMC Reacher adapters under stable-worldmodel's protocol (optional extra
`benchmarks`; skipped with the reason when the packages are missing)."""

from __future__ import annotations

import numpy as np
import pytest

from vjepa.world.envs import check_protocol, make_env


def _env(env_id: str, module: str):
    pytest.importorskip(module)
    return make_env(env_id)


def test_pusht_success_is_swm_eval_state():
    from vjepa.world.pusht import task_distance

    goal = np.array([100.0, 100.0, 300.0, 300.0, 1.0])
    near = goal + np.array([19.0, 0, 0, 0, np.pi / 10])  # pos 19 < 20, angle pi/10 < pi/9
    far_pos = goal + np.array([0, 21.0, 0, 0, 0])
    far_ang = goal + np.array([0, 0, 0, 0, np.pi / 8])
    wrapped = goal.copy()
    wrapped[4] = 1.0 + 2 * np.pi - 0.1  # the angle wraps
    d = task_distance(np.stack([near, far_pos, far_ang, wrapped]), goal)
    assert d[0] < 1.0 and d[1] > 1.0 and d[2] > 1.0 and d[3] < 1.0


def test_pusht_protocol_and_pushing_data():
    env = _env("vjepa/PushT-v0", "gym_pusht")
    base = env.unwrapped
    check_protocol(env, "vjepa/PushT-v0")
    assert base.max_episode_steps == 50 and base.goal_offset == 25
    base.goal_offset = 75  # plan.goal_offset: the budget follows (2 x the offset), as Two Rooms'
    assert base.max_episode_steps == 150
    base.goal_offset = 25
    moves = []
    for seed in range(12):
        start, goal = base.sample_task(seed)
        np.testing.assert_array_equal(base.sample_task(seed)[1], goal)  # a seed is a task
        env.reset(options={"state": start})
        # a contact between agent and block at the start is resolved by one physics step
        np.testing.assert_allclose(base.get_state(), start, atol=1.0)
        assert base.goal_distance(goal) > base.success_distance
        moves.append(np.linalg.norm(goal[2:4] - start[2:4]))
    assert np.median(moves) > 30.0  # the scripted pusher moves the block, random actions don't
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_dmc_reacher_protocol_and_wrapped_success():
    from vjepa.world.dmc_reacher import wrapped_joint_error

    err = wrapped_joint_error(np.array([[np.pi - 0.01, 0.0]]), np.array([-np.pi + 0.01, 0.0]))
    err2 = wrapped_joint_error(np.array([[0.0, 0.06]]), np.array([0.0, 0.0]))
    err = np.concatenate([err, err2])
    np.testing.assert_allclose(err, [0.02, 0.06], atol=1e-9)
    env = _env("vjepa/DMCReacher-v0", "dm_control")
    base = env.unwrapped
    check_protocol(env, "vjepa/DMCReacher-v0")
    assert base.success_distance == 0.05 and base.max_episode_steps == 50
    start, goal = base.sample_task(3)
    env.reset(options={"state": start})
    np.testing.assert_allclose(base.get_state(), start, atol=1e-6)
    assert base.goal_distance(goal) > base.success_distance
    env.reset(options={"state": goal})
    assert base.goal_distance(goal) == pytest.approx(0.0, abs=1e-6)
    # batched truth equals stepping the env
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2))
    states = np.stack([start, goal, start])
    batched = base.step_states(states, actions)
    for s, a, want in zip(states, actions, batched):
        env.reset(options={"state": s})
        np.testing.assert_allclose(env.step(a)[0], want, atol=1e-6)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.std() > 5  # the arm is drawn
