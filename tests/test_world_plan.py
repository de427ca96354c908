"""A plan on a tiny, really trained world model beats random actions on the same tasks.

The whole chain at toy size: ``vjepa collect`` a few episodes of a Two Rooms variant whose
tasks are short (goal 0.2 from the start, in the same room: no door to find), train a tiny
end-to-end world model for a few seconds, then ``vjepa plan`` with it on a few tasks against
random actions on the same tasks. Seeded throughout, so the numbers are the same every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from vjepa.config import load_config  # noqa: E402
from vjepa.world.two_rooms import TwoRoomsEnv, _blocked, room_of  # noqa: E402

GOAL_DISTANCE = 0.2


class NearGoalRooms(TwoRoomsEnv):
    """Two Rooms with short tasks: the goal lies GOAL_DISTANCE from the start, same room."""

    def sample_task(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        margin = 0.1
        while True:
            start = self._free_position(rng, room=int(rng.integers(2)))
            angle = rng.uniform(0, 2 * np.pi)
            goal = start + GOAL_DISTANCE * np.array([np.cos(angle), np.sin(angle)])
            inside = np.all(goal > margin) and np.all(goal < 1 - margin)
            if inside and not _blocked(goal) and room_of(goal) == room_of(start):
                return start, goal.astype(np.float32)


@pytest.mark.slow
def test_planning_with_a_tiny_trained_world_model_beats_random_actions(tmp_path: Path) -> None:
    from vjepa.world.collect import collect
    from vjepa.world.planning.mpc import run_plan
    from vjepa.world.train import world_train

    env = f"{Path(__file__)}:NearGoalRooms"
    collect(env, tmp_path / "traj", episodes=40, steps=30, seed=0)
    world = load_config(
        "configs/world/tworooms_e2e.yaml",
        [
            f"run.dir={tmp_path / 'world'}",
            f"data.shards={tmp_path / 'traj'}",
            "run.log_every=50",
            "data.batch_size=16",
            "world.latent_dim=32",
            "world.window=3",
            "world.frameskip=2",
            "world.pred_width=64",
            "world.pred_depth=2",
            "world.val_episodes=0",
            "train.max_steps=250",
            "train.checkpoint_every=250",
            "optim.lr=0.002",
            "optim.warmup_steps=10",
        ],
    )
    world_train(world)
    plan = load_config(
        "configs/plan/two_rooms_world.yaml",
        [
            f"run.dir={tmp_path / 'plan'}",
            f"plan.env={env}",
            f"plan.model={tmp_path / 'world'}",
            "plan.tasks=dev",
            "plan.episodes=8",
            "plan.max_steps=30",
            "plan.horizon=10",
            "plan.execute=2",
            "plan.samples=32",
            "plan.iterations=2",
            "plan.baselines=[random]",
            "plan.plots=false",
        ],
    )
    report = run_plan(plan)
    print(report["methods"])
    model, rand = report["methods"]["model"], report["methods"]["random"]
    assert model["success_rate"] >= rand["success_rate"] + 30.0, report["methods"]
    assert model["mean_final_distance"] < rand["mean_final_distance"] - 0.05, report["methods"]
