"""The planning energies (world/planning/costs.py): one latent cost serves `vjepa plan` and
``WorldModel.plan``, the oracle's batched and stepped paths agree, the energy reductions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_world_model import tiny_model

pytest.importorskip("gymnasium")

from vjepa.config import PlanConfig, load_config  # noqa: E402
from vjepa.world.envs import TWO_ROOMS_ID, make_env, reset_to  # noqa: E402
from vjepa.world.planning.costs import OracleCost, reduce_energy  # noqa: E402
from vjepa.world.planning.mpc import model_cost, oracle_cost, task_seed  # noqa: E402
from vjepa.world.planning.planners import plan_actions  # noqa: E402


def _frames() -> tuple[np.ndarray, np.ndarray]:
    obs = np.full((32, 32, 3), 200, dtype=np.uint8)
    goal = obs.copy()
    goal[4:10, 20:26] = 30
    return obs, goal


@pytest.mark.parametrize("energy", ["final", "sum", "min"])
def test_world_model_plan_and_vjepa_plan_score_the_same_sequences_identically(energy) -> None:
    model = tiny_model(frameskip=2, pool=2).eval()
    model.spec.energy_blur = 1.0
    obs, goal = _frames()
    pcfg = load_config(
        None,
        [
            f"plan.energy={energy}",
            "plan.horizon=4",
            "plan.samples=8",
            "plan.elites=4",
            "plan.iterations=2",
        ],
    ).plan
    seqs = torch.rand(16, 4, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1  # [N, H, A]
    ours = model.plan_cost(obs, goal, pcfg.energy)(seqs)  # [N]
    # `vjepa plan` builds its cost per replan from (frame, state, goal frame, goal state).
    theirs = model_cost(model, pcfg, model.device)(obs, None, goal, None)(seqs)  # [N]
    assert ours.shape == (16,)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    # ... and the same search on it gives the same plan.
    low, high = model.action_low, model.action_high
    gen = torch.Generator().manual_seed(3)
    expected = plan_actions(
        model_cost(model, pcfg, model.device)(obs, None, goal, None), pcfg, low, high, generator=gen
    )
    got = model.plan(obs, goal, pcfg, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_world_model_plan_is_seeded_bounded_and_takes_the_plan_section() -> None:
    model = tiny_model(frameskip=2, pool=2).eval()
    obs, goal = _frames()
    pcfg = PlanConfig(horizon=4, samples=8, iterations=2, elites=4, planner="mppi")
    a = model.plan(obs, goal, pcfg, generator=torch.Generator().manual_seed(0))
    b = model.plan(obs, goal, PlanConfig(horizon=4, samples=8, iterations=2, elites=4))
    again = model.plan(obs, goal, pcfg)  # the default generator is seed 0
    assert a.shape == b.shape == (4, 2) and a.abs().max() <= 1.0 and b.abs().max() <= 1.0
    torch.testing.assert_close(a, again, rtol=0, atol=0)
    assert model.plan(obs, goal).shape == (PlanConfig().horizon, 2)  # PlanConfig's defaults
    with pytest.raises(ValueError, match="whole number of model steps"):
        model.plan(obs, goal, PlanConfig(horizon=3, samples=8, iterations=1))


def test_reduce_energy() -> None:
    per_step = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, 4.0]])  # [N, H]
    assert reduce_energy(per_step, "final").tolist() == [2.0, 4.0]
    assert reduce_energy(per_step, "min").tolist() == [1.0, 0.5]
    assert reduce_energy(per_step, "sum").tolist() == [6.0, 8.5]


def test_oracle_batched_and_stepped_rollouts_agree() -> None:
    pcfg = PlanConfig(env=TWO_ROOMS_ID)
    env = make_env(TWO_ROOMS_ID)
    start, goal = env.unwrapped.sample_task(task_seed(pcfg, 0))
    frame = reset_to(env, start)
    batched = oracle_cost(env, TWO_ROOMS_ID, "sum")
    assert batched.batched  # Two Rooms has step_states / state_distance
    stepped = OracleCost(env, "sum", sim=make_env(TWO_ROOMS_ID))
    stepped.batched, stepped.sim = False, make_env(TWO_ROOMS_ID).unwrapped
    seqs = torch.rand(6, 5, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1  # [N, H, A]
    state = env.unwrapped.get_state()
    a = batched(frame, state, frame, goal)(seqs)
    b = stepped(frame, state, frame, goal)(seqs)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
