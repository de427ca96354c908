"""What a `vjepa plan` run reports: one :class:`Episode` per task and method, their summaries
(success rate with its Wilson 95 % interval, mean final distance, planning seconds per
action), ``report.json``'s dict and the printed table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vjepa.config import PlanConfig
from vjepa.stats import wilson_interval

# The z of the report's intervals since its first version (stats.Z95 is 1.959963984540054):
# kept so reports stay comparable number for number.
REPORT_Z = 1.96


@dataclass
class Episode:
    """One evaluated task."""

    method: str
    task: int
    success: bool
    final_distance: float
    steps: int
    plan_seconds: float
    states: list[list[float]] = field(default_factory=list)
    cost_calls: int = 0  # batched energy evaluations (predictor rollouts) of the episode
    subgoals: int = 0  # plan.levels=2: subgoals the high level proposed
    subgoals_reached: int = 0  # ... of which the agent reached within plan.horizon steps
    violations: list[bool] | None = None  # per step, when the env reports info["violation"]


def summarize(episodes: list[Episode]) -> dict[str, Any]:
    """Success rate (percent) with its 95 % interval, mean final distance, time per action."""
    n = len(episodes)
    k = sum(e.success for e in episodes)
    lo, hi = wilson_interval(k, n, z=REPORT_Z)
    actions = sum(e.steps for e in episodes)
    plan_seconds = sum(e.plan_seconds for e in episodes)
    return {
        "success_rate": 100.0 * k / n if n else 0.0,
        "success_rate_ci95": [100 * lo, 100 * hi],
        "mean_final_distance": float(np.mean([e.final_distance for e in episodes])) if n else None,
        "seconds_per_action": plan_seconds / actions if actions else 0.0,
        "episodes": n,
        "predictor_calls_per_episode": sum(e.cost_calls for e in episodes) / n if n else 0.0,
        **violation_summary(episodes),
    }


def violation_summary(episodes: list[Episode]) -> dict[str, Any]:
    """``violation_rate`` (percent of episodes with at least one violating step) and its 95 %
    Wilson interval; empty when the env reported no violation flags."""
    flagged = [e for e in episodes if e.violations is not None]
    if not flagged:
        return {}
    k = sum(any(e.violations) for e in flagged)
    lo, hi = wilson_interval(k, len(flagged), z=REPORT_Z)
    return {"violation_rate": 100.0 * k / len(flagged), "violation_rate_ci95": [100 * lo, 100 * hi]}


def build_report(
    pcfg: PlanConfig, method: str, results: dict[str, list[Episode]], first_task_seed: int
) -> dict[str, Any]:
    """report.json's dict: the main method's summary, each baseline's success rate (None when
    it did not run) and every method's summary under ``methods``."""
    main = summarize(results[method])
    report: dict[str, Any] = {
        "env": pcfg.env,
        "model": pcfg.model,
        "planner": pcfg.planner,
        "tasks": pcfg.tasks,
        "first_task_seed": first_task_seed,
        **main,
    }
    for name in ("random", "random_model", "oracle"):
        rate = None
        if name == "oracle" and method == "oracle":
            rate = main["success_rate"]
        elif name in results:
            rate = summarize(results[name])["success_rate"]
        report[f"{name}_success_rate"] = rate
    if "violation_rate" in main:
        report["violation_rate_ci95"] = main["violation_rate_ci95"]
    if "unconstrained" in results:
        free = summarize(results["unconstrained"])
        report["unconstrained_success_rate"] = free["success_rate"]
        report["unconstrained_violation_rate"] = free.get("violation_rate")
    report["methods"] = {name: summarize(eps) for name, eps in results.items()}
    return report


def hierarchy_summary(two_level: list[Episode], flat: list[Episode]) -> dict[str, Any]:
    """plan.levels=2: the flat planner's rate, both predictor-call counts per episode and the
    subgoal reachability (share of proposed subgoals reached within plan.horizon steps)."""
    flat_summary = summarize(flat)
    proposed = sum(e.subgoals for e in two_level)
    return {
        "flat_success_rate": flat_summary["success_rate"],
        "flat_success_rate_ci95": flat_summary["success_rate_ci95"],
        "flat_predictor_calls_per_episode": flat_summary["predictor_calls_per_episode"],
        "subgoals_per_episode": proposed / len(two_level) if two_level else 0.0,
        "subgoal_reachability": (
            sum(e.subgoals_reached for e in two_level) / proposed if proposed else None
        ),
    }


def format_report(report: dict) -> str:
    """The printed table: one row per method."""
    lines = [f"{'method':<14} {'success %':>10} {'95% CI':>15} {'final dist':>11} {'s/action':>9}"]
    for name, r in report["methods"].items():
        lo, hi = r["success_rate_ci95"]
        lines.append(
            f"{name:<14} {r['success_rate']:>10.1f} {f'[{lo:.1f}, {hi:.1f}]':>15} "
            f"{r['mean_final_distance']:>11.3f} {r['seconds_per_action']:>9.3f}"
            + (f"  violations {r['violation_rate']:.1f} %" if "violation_rate" in r else "")
        )
    return "\n".join(lines)
