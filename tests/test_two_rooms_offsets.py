"""Two Rooms with plan.goal_offset: the goal is the position that goal_offset steps of the
data-collection policy reach from a random free start (stable-worldmodel's protocol); the
default tasks stay as they were; the budget is 2 x the offset; report.json records both."""

import numpy as np
import pytest

from vjepa.config import load_config
from vjepa.world.envs import make_env
from vjepa.world.planning.budget import apply_goal_offset, episode_budget
from vjepa.world.planning.mpc import run_plan
from vjepa.world.policy import random_actions

# sample_task before goal_offset existed (main at 661bf06): (start, goal) per env and seed
BEFORE = {
    ("vjepa/TwoRooms-v0", 0): ([0.87560755, 0.59703857], [0.04749203, 0.82523787]),
    ("vjepa/TwoRooms-v0", 1500000): ([0.85892147, 0.81419659], [0.29696989, 0.92793465]),
    ("vjepa/TwoRoomsAny-v0", 7): ([0.61383688, 0.86146456], [0.75087398, 0.24993855]),
}


def _plan(*overrides):
    return load_config(None, list(overrides), command="plan").plan


def test_default_tasks_are_unchanged():
    for (spec, seed), (start, goal) in BEFORE.items():
        base = make_env(spec).unwrapped
        assert base.goal_offset is None and base.max_episode_steps is None
        got = base.sample_task(seed)
        np.testing.assert_allclose(got[0], start, atol=1e-7)
        np.testing.assert_allclose(got[1], goal, atol=1e-7)


@pytest.mark.parametrize("offset", [5, 25, 100])
def test_goal_is_the_state_the_collection_policy_reaches(offset):
    env = make_env("vjepa/TwoRooms-v0")
    base = env.unwrapped
    assert apply_goal_offset(env, _plan(f"plan.goal_offset={offset}")) == offset
    for seed in range(4):
        start, goal = base.sample_task(seed)
        # the same draws, by hand: a free start, then collect's actions (repeat_prob 0.8)
        rng = np.random.default_rng(seed)
        while True:
            s = base._free_position(rng)
            actions = random_actions(rng, offset, -np.ones(2), np.ones(2), 0.8)
            env.reset(options={"state": s})
            for a in actions:  # replayed through the env's real steps
                env.step(a)
            if base.goal_distance(s) > base.success_distance:
                break
        np.testing.assert_array_equal(s, start)
        np.testing.assert_array_equal(base.get_state(), goal)
        # a move is at most max_step per coordinate per step
        assert np.abs(goal - start).max() <= offset * base.max_step + 1e-6


def test_offset_tasks_are_seeded_and_reach_further_with_the_offset():
    base = make_env("vjepa/TwoRooms-v0").unwrapped
    base.goal_offset = 25
    a, b = base.sample_task(3), base.sample_task(3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(base.sample_task(4)[1], a[1])
    dist = {}
    for offset in (5, 100):
        base.goal_offset = offset
        pairs = [base.sample_task(s) for s in range(40)]
        d = np.array([np.linalg.norm(g - s) for s, g in pairs])
        assert d.min() > base.success_distance  # no pair is solved at the start
        dist[offset] = np.median(d)
    assert dist[100] > 2 * dist[5]


def test_budget_is_twice_the_offset_and_report_records_it(tmp_path):
    env = make_env("vjepa/TwoRooms-v0")
    apply_goal_offset(env, _plan("plan.goal_offset=25"))
    assert episode_budget(env, _plan()) == (50, "env")  # swm: 50 steps at offset 25
    assert episode_budget(env, _plan("plan.max_steps=30")) == (30, "plan.max_steps")
    keys = ["plan.episodes=2", "plan.samples=32", "plan.elites=4", "plan.iterations=2"]
    keys += [
        "plan.horizon=4",
        "plan.baselines=[]",
        "plan.plots=false",
        "plan.env=vjepa/TwoRooms-v0",
    ]
    report = run_plan(load_config(None, [f"run.dir={tmp_path}", "plan.goal_offset=4", *keys]))
    assert report["goal_offset"] == 4 and report["levels"] == 1
    assert (report["max_steps"], report["max_steps_source"]) == (8, "env")
    report = run_plan(load_config(None, [f"run.dir={tmp_path / 'plain'}", *keys]))
    assert report["goal_offset"] is None
    assert report["max_steps_source"] == "plan.fallback_steps"
