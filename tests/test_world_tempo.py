"""The temporal-distance head (TEMPO-style, #22): it learns steps between latents, trains with
`vjepa world train` (world.tempo), travels with the world model, and joins the planning cost
(plan.goal_cost) in the one goal term."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_world_model import tiny_model
from test_world_train import _overrides
from trajectories import write_trajectory_shard

import vjepa
from vjepa.config import PlanConfig, load_config
from vjepa.errors import UsageError
from vjepa.world.io import export_world_model, random_init_like
from vjepa.world.planning.costs import ModelCost, goal_energies
from vjepa.world.planning.mpc import run_plan
from vjepa.world.tempo import TEMPO_FILE, TempoHead, fit_tempo, tempo_metrics
from vjepa.world.train import world_train


def _corridor(n: int, steps: int, seed: int) -> list[torch.Tensor]:
    """Latents [T, 1, 16] of agents walking one way at 0.02 per step: step counts are a function
    of the two positions, seen only through a sin / cos code."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.uniform(0, 1) + 0.02 * np.arange(steps)  # [T]
        k = np.arange(1, 9)
        z = np.concatenate([np.sin(np.outer(x, k)), np.cos(np.outer(x, k))], 1)  # [T, 16]
        out.append(torch.from_numpy(z).float()[:, None])
    return out


def test_tempo_head_ranks_held_out_steps_and_an_untrained_head_does_not():
    train, val = _corridor(60, 40, seed=0), _corridor(6, 40, seed=1)
    head = fit_tempo(train, cap=32, steps=400, lr=3e-3, seed=0, hidden=64, far=0.1)
    m = tempo_metrics(head, val)
    assert m["tempo_spearman"] > 0.9, m
    assert m["tempo_mae_steps"] < 4.0, m
    assert m["tempo_pairs"] == 6 * sum(min(40 - i, 33) for i in range(40))
    untrained = TempoHead(16, 64, 32)
    assert tempo_metrics(untrained, val)["tempo_spearman"] < 0.6
    z = val[0]
    with torch.no_grad():
        steps = head.steps(z[:1], z[[0, 5, 20]])  # the same start, later and later frames
    assert steps[0] < steps[1] < steps[2] and float(steps.max()) <= 32


def test_goal_cost_tempo_and_blend_use_the_head_in_the_one_goal_term():
    model = tiny_model()
    pred = torch.randn(5, 3, *model.encode(torch.zeros(1, 32, 32, 3, dtype=torch.uint8)).shape[2:])
    z_goal = torch.randn(1, *pred.shape[2:])
    with pytest.raises(UsageError, match="plan.goal_cost=tempo needs a temporal-distance head"):
        ModelCost(model, "min", torch.device("cpu"), goal_cost="tempo")
    model.tempo = TempoHead(pred[0, 0].numel(), 16, cap=20)
    energy = goal_energies(model, pred, z_goal)  # [5, 3]
    expected = torch.stack([model.energy(pred[:, t], z_goal) for t in range(3)], 1)
    torch.testing.assert_close(energy, expected)
    tempo = goal_energies(model, pred, z_goal, "tempo")
    torch.testing.assert_close(tempo, model.tempo.steps(pred, z_goal[:, None]) / 20)
    assert tempo.shape == (5, 3) and bool((tempo >= 0).all() and (tempo <= 1).all())
    blend = goal_energies(model, pred, z_goal, "blend", 2.5)
    torch.testing.assert_close(blend, energy + 2.5 * tempo)
    # the cost ModelCost hands the planner reduces that term over the horizon (plan.energy)
    frame = np.zeros((32, 32, 3), np.uint8)
    goal = np.full((32, 32, 3), 200, np.uint8)
    pcfg = PlanConfig(goal_cost="blend", tempo_weight=2.5)
    seqs = torch.rand(4, 3, 2) * 2 - 1
    cost = model.plan_cost(frame, goal, "sum", pcfg)(seqs)
    z0 = model.encode(frame[None, None])
    pred = model.rollout(z0.expand(4, -1, -1, -1), seqs)
    z_goal = model.encode(goal[None, None])[:, 0]
    torch.testing.assert_close(cost, goal_energies(model, pred, z_goal, "blend", 2.5).sum(1))
    twin = random_init_like(model)
    assert twin.tempo is not None and not torch.equal(
        twin.tempo.mlp[0].weight, model.tempo.mlp[0].weight
    )


def test_world_train_fits_the_head_saves_it_with_the_model_and_plan_reports_the_cost(
    tmp_path: Path,
):
    shards = write_trajectory_shard(tmp_path / "traj" / "t-000000.tar", episodes=4, steps=10)
    run = tmp_path / "run"
    over = [*_overrides(run, shards, 3), "world.tempo=true", "world.tempo_steps=50"]
    over += ["world.tempo_cap=8", "world.tempo_hidden=16"]
    world_train(load_config("configs/world/tworooms.yaml", over))
    val = json.loads((run / "val.json").read_text())
    assert -1.0 <= val["tempo_spearman"] <= 1.0 and val["tempo_cap"] == 8
    assert val["tempo_pairs"] == sum(min(10 - i, 9) for i in range(10))  # one held-out traj
    wm = vjepa.load_world_model(run)
    assert wm.tempo is not None and wm.tempo.cap == 8 and wm.tempo.hidden == 16
    export = export_world_model(run, tmp_path / "export")
    assert (export / TEMPO_FILE).is_file()
    again = vjepa.load_world_model(export)
    z = wm.encode(torch.randint(0, 255, (1, 3, 32, 32, 3), dtype=torch.uint8))[0]
    torch.testing.assert_close(again.tempo.steps(z[:1], z), wm.tempo.steps(z[:1], z))
    # a head fitted on another checkpoint is not this one's: the older checkpoint loads without
    ckpts = sorted((run / "checkpoints").iterdir())
    if len(ckpts) > 1:
        assert vjepa.load_world_model(ckpts[0]).tempo is None
    plan = [
        f"run.dir={tmp_path / 'plan'}",
        f"plan.model={run}",
        "plan.env=vjepa/TwoRooms-v0",
        "plan.goal_cost=blend",
        "plan.tempo_weight=0.5",
        "plan.episodes=1",
        "plan.max_steps=4",
        "plan.horizon=4",
        "plan.execute=2",
        "plan.samples=8",
        "plan.iterations=1",
        "plan.elites=4",
        "plan.baselines=[random_model]",
        "plan.plots=false",
    ]
    report = run_plan(load_config(None, plan))
    assert report["goal_cost"] == "blend" and report["tempo_weight"] == 0.5
    assert report["predictor_calls_per_episode"] == 2  # 4 steps, replanning every 2
    # without world.tempo there is no head, and plan.goal_cost=tempo is a clear error
    plain = tmp_path / "plain"
    world_train(load_config("configs/world/tworooms.yaml", _overrides(plain, shards, 3)))
    assert vjepa.load_world_model(plain).tempo is None
    assert "tempo_spearman" not in json.loads((plain / "val.json").read_text())
    with pytest.raises(UsageError, match="world.tempo=true"):
        run_plan(load_config(None, [*plan, f"plan.model={plain}"]))
