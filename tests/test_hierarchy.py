"""plan.levels=2: the high level's subgoals on the data's graph get the agent through a maze
whose goals sit behind walls, where the flat planner on the same energy does not."""

import json

import numpy as np
import pytest
from test_mpc import _tiny_world_export

from vjepa.config import ConfigError, load_config
from vjepa.world.collect import collect, random_actions
from vjepa.world.envs import make_env
from vjepa.world.planning.hierarchy import HighLevel, StateMeasure, build_graph
from vjepa.world.planning.mpc import Method, evaluate, oracle_cost, run_plan
from vjepa.world.trajectories import Trajectory


def _maze_walks(env, episodes: int = 40, steps: int = 120) -> list[Trajectory]:
    """Random walks with persistence (the data of `vjepa collect`) on the true dynamics."""
    base, rng = env.unwrapped, np.random.default_rng(0)
    s = np.stack([base._free_position(rng) for _ in range(episodes)])  # [E, 2]
    acts = np.stack([random_actions(rng, steps - 1, -np.ones(2), np.ones(2), 0.8) for _ in s])
    states = [s]
    for t in range(steps - 1):
        states.append(base.step_states(states[-1], acts[:, t]))
    states = np.stack(states, 1)  # [E, T, 2]
    frames = np.zeros((steps, 1, 1, 3), np.uint8)  # StateMeasure reads states only
    return [Trajectory(str(i), frames, acts[i], states[i], {}) for i in range(episodes)]


def test_two_levels_reach_goals_behind_walls_that_the_flat_planner_does_not():
    env = make_env("vjepa/Maze-v0")
    cfg = load_config(
        None,
        [
            "plan.env=vjepa/Maze-v0",
            "plan.tasks=dev",
            "plan.episodes=3",
            "plan.max_steps=150",
            "plan.samples=32",
            "plan.iterations=2",
            "plan.elites=8",
            "plan.execute=5",
        ],
        command="plan",
    )
    pcfg = cfg.plan
    graph = build_graph(_maze_walks(env), StateMeasure(env), pcfg)
    assert graph.frames.shape[0] == 1200 and graph.links > 0
    oracle = oracle_cost(env, pcfg.env, pcfg.energy)
    flat = evaluate(env, pcfg, Method("flat", oracle), 0)
    high = HighLevel(graph, pcfg)
    two = evaluate(env, pcfg, Method("two_level", oracle, high), 0)
    assert [e.success for e in flat] == [False, False, False]
    assert [e.success for e in two] == [True, True, True]
    assert all(e.subgoals >= 3 and e.subgoals_reached >= e.subgoals // 2 for e in two)
    assert sum(e.cost_calls for e in two) < sum(e.cost_calls for e in flat)  # ends early


def test_levels_2_reports_flat_rate_calls_and_reachability(tmp_path):
    collect("vjepa/Maze-v0", tmp_path / "traj", episodes=3, steps=12, seed=0, progress=False)
    export = _tiny_world_export(tmp_path / "wm")
    overrides = [
        f"run.dir={tmp_path / 'run'}",
        f"plan.model={export}",
        "plan.env=vjepa/Maze-v0",
        "plan.levels=2",
        f"plan.subgoal_data={tmp_path / 'traj'}",
        "plan.subgoal_stride=2",
        "plan.episodes=1",
        "plan.horizon=4",
        "plan.execute=2",
        "plan.samples=8",
        "plan.iterations=1",
        "plan.elites=4",
        "plan.baselines=[]",
        "plan.plots=false",
        "plan.max_steps=6",
    ]
    report = run_plan(load_config(None, overrides))
    assert report["levels"] == 2 and report["max_steps"] == 6
    assert report["max_steps_source"] == "plan.max_steps"
    assert set(report["methods"]) == {"model", "flat"}
    assert report["flat_success_rate"] == report["methods"]["flat"]["success_rate"]
    # 6 steps, replanning every 2: 3 plans of 1 iteration, one batched rollout each
    assert report["flat_predictor_calls_per_episode"] == 3
    assert report["predictor_calls_per_episode"] == 3
    assert "subgoal_reachability" in report and report["subgoals_per_episode"] >= 0
    assert json.loads((tmp_path / "run" / "report.json").read_text())["levels"] == 2
    # no subgoal data and a plan.model without a run config: the error names the key
    with pytest.raises(ConfigError, match="plan.subgoal_data"):
        run_plan(load_config(None, [o for o in overrides if "subgoal_data" not in o]))
