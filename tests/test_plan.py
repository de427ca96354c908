"""`vjepa plan`: MPC on held-out tasks, report.json, plots, baselines and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from vjepa.cli import main  # noqa: E402
from vjepa.config import load_config  # noqa: E402
from vjepa.world.envs import TWO_ROOMS_ID, make_env  # noqa: E402
from vjepa.world.planning.mpc import check_model_env, run_plan, wilson_interval  # noqa: E402
from vjepa.world.two_rooms import room_of  # noqa: E402

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


def test_wilson_interval():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 13.0 < hi < 17.0  # 0/20 still leaves up to ~16 %
    lo, hi = wilson_interval(19, 20)
    assert 75.0 < lo < 77.0 and 99.0 < hi <= 100.0
    assert wilson_interval(10, 20)[0] < 50 < wilson_interval(10, 20)[1]


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
    import torch
    from safetensors.torch import save_file

    from vjepa.world.io import random_encoder, world_description
    from vjepa.world.model import WorldSpec, build_world_model

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
    from vjepa.world.planning.mpc import task_seed

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
