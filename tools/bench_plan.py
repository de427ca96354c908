"""Time one MPC replan (seconds per action with execute=1) of CEM / MPPI on an env.

    python tools/bench_plan.py [--env vjepa/TwoRooms-v0] [--model oracle|PATH] [--repeats 20]
        [plan.key=value ...]

Runs the planner ``--repeats`` times from the first task's start (the oracle, or a world
model from a path that vjepa.load_world_model accepts) and prints the median and the spread.
Speed figures live here, never in the timed tests.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vjepa.config import load_config
from vjepa.world.envs import action_bounds, make_env, reset_to
from vjepa.world.planning.costs import ModelCost
from vjepa.world.planning.mpc import oracle_cost, task_seed
from vjepa.world.planning.planners import plan_actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="vjepa/TwoRooms-v0")
    parser.add_argument("--model", default="oracle")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(None, [f"plan.env={args.env}", f"plan.model={args.model}", *args.overrides])
    pcfg = cfg.plan
    env = make_env(pcfg.env)
    device = torch.device(pcfg.device)
    if pcfg.model == "oracle":
        builder = oracle_cost(env, pcfg.env, pcfg.energy)
    else:
        from vjepa.world.io import load_world_model

        builder = ModelCost(load_world_model(pcfg.model).to(device).eval(), pcfg.energy, device)
    start, goal = env.unwrapped.sample_task(task_seed(pcfg, 0))  # the first task of plan.tasks
    goal_frame = reset_to(env, goal)
    frame = reset_to(env, start)
    low, high = (torch.from_numpy(b).to(device) for b in action_bounds(env))
    times = []
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        cost = builder(frame, env.unwrapped.get_state(), goal_frame, goal)
        plan_actions(cost, pcfg, low, high, generator=torch.Generator(device).manual_seed(i))
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first call warms up (lazy imports, allocator)
            times.append(time.perf_counter() - t0)
    print(
        f"{pcfg.env} model={pcfg.model} planner={pcfg.planner} H={pcfg.horizon} "
        f"samples={pcfg.samples} iterations={pcfg.iterations}: "
        f"{statistics.median(times):.4f} s per replan (min {min(times):.4f}, "
        f"max {max(times):.4f}, {len(times)} runs, torch threads {torch.get_num_threads()})"
    )


if __name__ == "__main__":
    main()
