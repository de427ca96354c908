"""`vjepa plan` (world/planning/mpc.py): MPC on held-out tasks, report.json, plots, baselines
and clear errors; and, slow, a plan on a tiny really trained world model beats random actions.

The slow test runs the whole chain at toy size: ``vjepa collect`` a few episodes of a Two Rooms
variant whose tasks are short (goal 0.2 from the start, in the same room: no door to find),
train a tiny end-to-end world model for a few seconds, then ``vjepa plan`` with it on a few
tasks against random actions on the same tasks. Seeded throughout, so the numbers are the same
every run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

pytest.importorskip("gymnasium")

from vjepa.cli import main  # noqa: E402
from vjepa.config import load_config  # noqa: E402
from vjepa.world.collect import collect  # noqa: E402
from vjepa.world.envs import TWO_ROOMS_ID, make_env  # noqa: E402
from vjepa.world.io import random_encoder, world_description  # noqa: E402
from vjepa.world.model import WorldSpec, build_world_model  # noqa: E402
from vjepa.world.planning.mpc import check_model_env, run_plan, task_seed  # noqa: E402
from vjepa.world.train import world_train  # noqa: E402
from vjepa.world.two_rooms import TwoRoomsEnv, _blocked, room_of  # noqa: E402

REPORT_KEYS = {
    "success_rate",
    "success_rate_ci95",
    "mean_final_distance",
    "seconds_per_action",
    "episodes",
    "random_success_rate",
    "random_model_success_rate",
    "oracle_success_rate",
}


def test_oracle_solves_two_rooms_hard_tasks_and_random_does_not(tmp_path):
    cfg = load_config(
        None,
        [
            f"run.dir={tmp_path}",
            f"plan.env={TWO_ROOMS_ID}",
            "plan.model=oracle",
            "plan.tasks=dev",  # the three tasks this budget (128 x 4) was sized on
            "plan.episodes=3",
            "plan.samples=128",
            "plan.iterations=4",
            "plan.baselines=[random]",
        ],
    )
    report = run_plan(cfg)
    assert REPORT_KEYS <= set(report)
    assert report["episodes"] == 3
    assert report["success_rate"] == 100.0 and report["oracle_success_rate"] == 100.0
    assert report["random_success_rate"] == 0.0
    assert report["random_model_success_rate"] is None  # no world model to randomise
    assert report["mean_final_distance"] <= make_env(TWO_ROOMS_ID).unwrapped.success_distance
    assert report["seconds_per_action"] > 0
    assert json.loads((tmp_path / "report.json").read_text()) == report
    rows = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["oracle"] * 3 + ["random"] * 3
    for row in rows[:3]:
        # A hard task: the path starts in one room and ends in the other, through the door.
        states = np.asarray(row["states"])
        assert room_of(states[0]) != room_of(states[-1]) and row["success"]
        assert len(states) == row["steps"] + 1
    for name in ("trajectories.png", "energy_landscape.png", "episode.gif"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert load_config(tmp_path / "config.yaml", command="plan") == cfg  # run and plan only


def test_action_dimension_mismatch_is_named():
    class ThreeDModel:  # only what the check reads: a model's declared interface
        action_dim = 3
        frameskip = 1

    cfg = load_config(None, [], command="plan").plan
    with pytest.raises(ValueError) as err:
        check_model_env(ThreeDModel(), make_env(TWO_ROOMS_ID), TWO_ROOMS_ID, cfg)
    assert "3-D" in str(err.value) and "2-D" in str(err.value)

    class SkipThree:
        action_dim = 2
        frameskip = 3

    with pytest.raises(ValueError, match="multiple of the world model's frameskip"):
        check_model_env(SkipThree(), make_env(TWO_ROOMS_ID), TWO_ROOMS_ID, cfg)


def test_plan_cli_user_errors(tmp_path, capsys):
    code = main(["plan", str(tmp_path / "missing.yaml")])
    assert code == 2 and "missing.yaml" in capsys.readouterr().err
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"run:\n  dir: {tmp_path / 'run'}\nplan:\n  env: vjepa/NoSuch-v0\n")
    assert main(["plan", str(cfg)]) == 2
    assert "vjepa/NoSuch-v0" in capsys.readouterr().err
    assert main(["plan", str(cfg), "plan.horizn=3"]) == 2
    assert "plan.horizon" in capsys.readouterr().err  # the typo's closest valid key
    assert main(["plan", str(cfg), "plan.planner=sgd"]) == 2
    assert main(["plan", str(cfg), "plan.baselines=[random,rnd]"]) == 2
    assert "rnd" in capsys.readouterr().err
    assert main(["plan", str(cfg), "plan.samples=8", "plan.elites=16"]) == 2
    assert "plan.elites" in capsys.readouterr().err


def _tiny_world_export(path, frameskip: int = 2):
    """A real world-model export folder (random-init tiny model), as `vjepa export` writes it."""
    enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=32, seed=0)
    spec = WorldSpec(
        frame_size=32,
        pool=2,
        window=3,
        frameskip=frameskip,
        action_low=[-1.0, -1.0],
        action_high=[1.0, 1.0],
    )
    model = build_world_model(
        enc, spec, width=32, depth=1, heads=2, generator=torch.Generator().manual_seed(0)
    )
    path.mkdir()
    save_file(
        {k: v.contiguous() for k, v in model.encoder.encoder.state_dict().items()},
        str(path / "encoder.safetensors"),
    )
    save_file(
        {k: v.contiguous() for k, v in model.predictor.state_dict().items()},
        str(path / "predictor.safetensors"),
    )
    (path / "config.json").write_text(json.dumps(world_description(model)))
    return path


def test_plan_with_a_world_model_runs_every_baseline(tmp_path):
    export = _tiny_world_export(tmp_path / "wm")
    overrides = [
        f"run.dir={tmp_path / 'run'}",
        f"plan.model={export}",
        "plan.episodes=2",
        "plan.max_steps=4",
        "plan.horizon=4",
        "plan.execute=2",
        "plan.samples=8",
        "plan.iterations=2",
        "plan.elites=4",
        "plan.planner=mppi",
        "plan.baselines=[random,random_model,oracle]",
        "plan.plots=false",  # the plots are covered by the oracle test
    ]
    report = run_plan(load_config(None, overrides))
    assert set(report["methods"]) == {"model", "random", "random_model", "oracle"}
    for key in ("random_success_rate", "random_model_success_rate", "oracle_success_rate"):
        assert report[key] is not None
    assert report["episodes"] == 2 and report["seconds_per_action"] > 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert sorted({r["method"] for r in rows}) == ["model", "oracle", "random", "random_model"]
    assert all(len(r["states"]) == r["steps"] + 1 for r in rows)
    assert not (tmp_path / "run" / "energy_landscape.png").exists()
    # The reacher has 2-D actions too, so it runs; a horizon of 3 is not whole model steps.
    with pytest.raises(ValueError, match="frameskip"):
        run_plan(load_config(None, overrides + ["plan.horizon=3", "plan.env=vjepa/Reacher-v0"]))


def test_dev_and_val_tasks_are_disjoint_and_val_is_the_default(tmp_path):
    env = make_env(TWO_ROOMS_ID).unwrapped
    dev = load_config(None, ["plan.tasks=dev", "plan.episodes=50"]).plan
    val = load_config(None, ["plan.episodes=50"]).plan
    assert val.tasks == "val"
    dev_seeds = {task_seed(dev, i) for i in range(50)}
    val_seeds = {task_seed(val, i) for i in range(50)}
    assert len(dev_seeds) == len(val_seeds) == 50 and not dev_seeds & val_seeds
    dev_starts = {tuple(env.sample_task(s)[0].tolist()) for s in dev_seeds}
    val_starts = {tuple(env.sample_task(s)[0].tolist()) for s in val_seeds}
    assert not dev_starts & val_starts  # different tasks, not only different seeds
    with pytest.raises(ValueError, match="overlap"):
        task_seed(dev, 500_000)
    # The report says which split it ran on.
    cfg = load_config(
        None,
        [
            f"run.dir={tmp_path}",
            "plan.tasks=dev",
            "plan.episodes=1",
            "plan.max_steps=2",
            "plan.samples=8",
            "plan.elites=4",
            "plan.iterations=1",
            "plan.baselines=[]",
            "plan.plots=false",
        ],
    )
    report = run_plan(cfg)
    assert report["tasks"] == "dev" and report["first_task_seed"] == dev.task_seed


# ----------------------------------------------------------------------------------------
# Slow: a tiny trained world model plans better than random actions
# ----------------------------------------------------------------------------------------

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
