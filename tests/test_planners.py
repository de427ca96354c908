"""CEM and MPPI find the minimum of known energies; seeded; bounded; clear errors."""

from __future__ import annotations

import pytest
import torch

from vjepa.config import PlanConfig
from vjepa.world.planning.planners import cem, mppi, plan_actions

H, A = 5, 2
LOW, HIGH = -torch.ones(A), torch.ones(A)


def _quadratic(target: torch.Tensor):
    def cost(seqs: torch.Tensor) -> torch.Tensor:  # [N, H, A] -> [N]
        return ((seqs - target) ** 2).sum((1, 2))

    return cost


def _run(planner, cost, seed=0, **kw):
    common = dict(horizon=H, action_low=LOW, action_high=HIGH, samples=200, iterations=12)
    common |= dict(elites=20, generator=torch.Generator().manual_seed(seed))
    if planner is mppi:
        common["temperature"] = 0.1
    return planner(cost, **(common | kw))


@pytest.mark.parametrize("planner", [cem, mppi])
def test_finds_quadratic_minimum(planner):
    target = torch.tensor([[0.5, -0.3], [0.1, 0.8], [-0.6, 0.2], [0.0, 0.0], [0.9, -0.9]])
    plan = _run(planner, _quadratic(target))
    assert plan.shape == (H, A)
    assert (plan - target).abs().max() < 0.06
    # Far better than the box centre it started from.
    assert _quadratic(target)(plan[None]) < 0.02 * _quadratic(target)(torch.zeros(1, H, A))


@pytest.mark.parametrize("planner", [cem, mppi])
def test_seeded_and_bounded(planner):
    target = torch.full((H, A), 3.0)  # outside the box: the optimum is the upper bound
    a = _run(planner, _quadratic(target), seed=1)
    b = _run(planner, _quadratic(target), seed=1)
    c = _run(planner, _quadratic(target), seed=2, iterations=2)
    assert torch.equal(a, b)  # the same generator seed gives the same plan
    assert not torch.equal(a, c)
    assert (a <= HIGH).all() and (a >= LOW).all()
    assert (a - HIGH).abs().max() < 0.05


def test_non_convex_energy_finds_global_minimum():
    # Two wells in the first action: a shallow one at -0.6 and the global one at +0.7.
    def cost(seqs: torch.Tensor) -> torch.Tensor:
        x = seqs[:, 0, 0]
        return torch.minimum((x + 0.6) ** 2 + 0.3, (x - 0.7) ** 2) + (seqs[:, 1:] ** 2).sum((1, 2))

    for planner in (cem, mppi):
        plan = _run(planner, cost)
        assert plan[0, 0] == pytest.approx(0.7, abs=0.06)


def test_warm_start_and_errors():
    target = torch.full((H, A), 0.25)
    warm = _run(cem, _quadratic(target), init_mean=target.clone(), iterations=1, init_std=0.01)
    assert (warm - target).abs().max() < 0.02  # the mean is scored, so a perfect warm start wins
    with pytest.raises(ValueError, match="cost must map"):
        _run(cem, lambda s: s.sum(-1))
    with pytest.raises(ValueError, match="init_mean"):
        _run(mppi, _quadratic(target), init_mean=torch.zeros(H + 1, A))
    with pytest.raises(ValueError, match="elites"):
        _run(cem, _quadratic(target), elites=0)
    # A NaN energy (a diverged rollout) is never chosen.
    nan_cost = lambda s: torch.where(s[:, 0, 0] > 0, torch.nan, _quadratic(target)(s))  # noqa: E731
    plan = _run(cem, nan_cost)
    assert plan[0, 0] <= 0


def test_plan_actions_runs_the_configured_planner_with_its_settings() -> None:
    target = torch.full((H, A), 0.3)
    cost = _quadratic(target)
    for planner, run in (("cem", cem), ("mppi", mppi)):
        pcfg = PlanConfig(planner=planner, horizon=H, samples=64, iterations=5, elites=80)
        got = plan_actions(cost, pcfg, LOW, HIGH, generator=torch.Generator().manual_seed(0))
        kw = dict(temperature=pcfg.temperature) if planner == "mppi" else {}
        expected = run(
            cost,
            horizon=H,
            action_low=LOW,
            action_high=HIGH,
            samples=64,
            iterations=5,
            elites=64,  # elites are capped at the population
            generator=torch.Generator().manual_seed(0),
            init_std=pcfg.init_std,
            **kw,
        )
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
