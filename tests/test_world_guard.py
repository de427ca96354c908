"""Guardrails (#21): violation flags in shards, the hazard head, the guarded costs, rejection
inside CEM / MPPI, the Lagrangian multiplier and the violation rows of the report."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from vjepa.config import DataConfig, PlanConfig  # noqa: E402
from vjepa.world.collect import collect  # noqa: E402
from vjepa.world.envs import TWO_ROOMS_ID, make_env  # noqa: E402
from vjepa.world.hazard import fit_hazard, hazard_metrics, load_hazard, save_hazard  # noqa: E402
from vjepa.world.planning.guard import (  # noqa: E402
    Guard,
    action_terms,
    guarded_oracle_cost,
)
from vjepa.world.planning.planners import cem, mppi  # noqa: E402
from vjepa.world.planning.report import Episode, build_report  # noqa: E402
from vjepa.world.trajectories import load_trajectories  # noqa: E402

LAVA = "vjepa/LavaRoom-v0"


def test_collect_stores_violation_flags_and_old_shards_read(tmp_path):
    collect(LAVA, tmp_path / "lava", episodes=6, steps=30, seed=3, progress=False)
    collect(TWO_ROOMS_ID, tmp_path / "rooms", episodes=1, steps=5, seed=3, progress=False)
    trajs, errors = load_trajectories(str(tmp_path / "lava"), DataConfig.decoder)
    assert errors.total == 0 and len(trajs) == 6
    env = make_env(LAVA).unwrapped
    flagged = 0
    for t in trajs:
        assert t.violations is not None and t.violations.shape == (30,)
        assert t.violations.dtype == bool
        np.testing.assert_array_equal(t.violations, env.violation_states(t.states))
        flagged += int(t.violations.sum())
    assert flagged > 0  # random walks do step into the lava
    rooms, _ = load_trajectories(str(tmp_path / "rooms"), DataConfig.decoder)
    assert rooms[0].violations is None  # no flags: unknown


def test_hazard_head_fits_rare_positives(tmp_path):
    gen = torch.Generator().manual_seed(0)
    latents, flags = [], []
    for _ in range(40):
        y = torch.rand(40, generator=gen) < 0.08  # rare positives
        z = torch.randn(40, 4, 8, generator=gen)  # [T, N, D]
        z[y, 0, :] += 3.0  # a violation shows in one token (one patch)
        latents.append(z)
        flags.append(y.numpy())
    head = fit_hazard(latents[:30], flags[:30], steps=200, lr=1e-2, seed=0)
    m = hazard_metrics(head, latents[30:], flags[30:], 0.5)
    assert m["hazard_recall"] >= 0.95 and m["hazard_precision"] >= 0.8, m
    save_hazard(head, tmp_path)
    again = load_hazard(tmp_path)
    torch.testing.assert_close(again(latents[0]), head(latents[0]))
    assert load_hazard(tmp_path / "missing") is None


# A tiny 1-D cost with a known answer: energy (a - 0.5)^2 per step, a step violates above 0.2.
def _tiny(seqs):  # [N, H, 1] -> ([N], [N])
    a = seqs[..., 0]  # [N, H]
    return ((a - 0.5) ** 2).sum(1), (a > 0.2).any(1)


_BOX = dict(action_low=torch.tensor([-1.0]), action_high=torch.tensor([1.0]))


@pytest.mark.parametrize("planner", [cem, mppi])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rejection_never_returns_a_violating_plan(planner, seed):
    gen = torch.Generator().manual_seed(seed)
    init = torch.full((3, 1), 0.5)  # start inside the forbidden region
    plan = planner(
        _tiny, horizon=3, samples=64, iterations=4, elites=8, generator=gen, init_mean=init, **_BOX
    )
    assert bool((plan <= 0.2).all()), plan  # safe
    free = planner(
        lambda s: _tiny(s)[0], horizon=3, samples=64, iterations=4, elites=8,
        generator=torch.Generator().manual_seed(seed), init_mean=init, **_BOX,
    )  # fmt: skip
    assert bool((free > 0.2).any())  # unconstrained, it goes to 0.5


def test_action_terms_and_penalty():
    seqs = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [-1.0, 0.0]]])  # [2, 2, 2]
    low, high = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])
    mag, smooth = action_terms(seqs, low, high)
    torch.testing.assert_close(mag, torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(smooth, torch.tensor([0.0, 0.5]))
    pcfg = replace(PlanConfig(), action_weight=2.0, smooth_weight=4.0, guard_weight=3.0)
    guard = Guard(pcfg, low, high)
    hazard = torch.tensor([[0.0, 1.0], [0.5, 0.0]])  # [N, S]
    energy = guard.combine(torch.zeros(2), hazard, seqs)
    torch.testing.assert_close(energy, torch.tensor([2 + 0 + 3.0, 1 + 2 + 1.5]))


def test_reject_mode_flags_and_lagrangian_dual_ascent():
    low, high = torch.tensor([-1.0]), torch.tensor([1.0])
    rej = Guard(replace(PlanConfig(), guard_mode="reject", guard_threshold=0.5), low, high)
    _, bad = rej.combine(
        torch.zeros(2), torch.tensor([[0.1, 0.9], [0.2, 0.3]]), torch.zeros(2, 2, 1)
    )
    assert bad.tolist() == [True, False]
    pcfg = replace(PlanConfig(), guard_mode="lagrangian", guard_weight=1.0, guard_dual_lr=2.0)
    lag = Guard(pcfg, low, high)
    lag.new_goal(np.zeros((2, 2, 3), np.uint8))
    lag.ascend(torch.tensor([0.2, 1.0]))  # worst 1.0 > 0.5: +2 * 0.5
    assert lag.lam == pytest.approx(2.0)
    lag.ascend(torch.tensor([0.0, 0.0]))  # safe: -2 * 0.5
    assert lag.lam == pytest.approx(1.0)
    for _ in range(5):
        lag.ascend(torch.zeros(2))
    assert lag.lam == 0.0  # never negative
    lag.new_goal(np.ones((2, 2, 3), np.uint8))
    assert lag.lam == 1.0  # restarts per goal


def test_guarded_oracle_avoids_the_lava():
    env = make_env(LAVA)
    base = env.unwrapped
    start, goal = base.sample_task(1000000)
    pcfg = replace(PlanConfig(), guard_mode="reject", energy="sum")
    cost = guarded_oracle_cost(env, pcfg)(None, start, np.zeros((2, 2, 3), np.uint8), goal)
    straight = torch.from_numpy((goal[:2] - start[:2]) / np.linalg.norm(goal[:2] - start[:2]))
    seqs = straight.float().expand(1, 20, 2).clone()  # [1, 20, 2]: the straight line
    _, violating = cost(seqs)
    assert bool(violating[0])  # the lava lies on the straight path
    assert guarded_oracle_cost(make_env(TWO_ROOMS_ID), pcfg) is None


def test_report_violation_rates_and_unconstrained_row():
    def eps(method, flags):
        return [
            Episode(method, i, True, 0.0, 3, 0.1, [], violations=f) for i, f in enumerate(flags)
        ]

    results = {
        "model": eps("model", [[False] * 3] * 9 + [[False, True, False]]),
        "unconstrained": eps("unconstrained", [[True, False, False]] * 5 + [[False] * 3] * 5),
        "random": [Episode("random", i, False, 1.0, 3, 0.0, []) for i in range(10)],
    }
    report = build_report(PlanConfig(), "model", results, 0)
    assert report["violation_rate"] == pytest.approx(10.0)
    lo, hi = report["violation_rate_ci95"]
    assert 0 < lo < 10 < hi < 50
    assert report["unconstrained_violation_rate"] == pytest.approx(50.0)
    assert report["unconstrained_success_rate"] == pytest.approx(100.0)
    assert "violation_rate" not in report["methods"]["random"]  # the env reported no flags
