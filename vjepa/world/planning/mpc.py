"""`vjepa plan CONFIG`: receding-horizon MPC on held-out tasks, against its baselines.

For each of ``plan.episodes`` tasks of the ``plan.tasks`` split (:func:`task_seed`: dev tasks
for choosing settings, val tasks for reporting, disjoint seeds) of the env, the agent
starts in the start state and sees the goal only as an image (the render at the goal state).
Every ``plan.execute`` steps it replans: CEM or MPPI (:mod:`vjepa.world.planning.planners`) minimise
an energy over action sequences of ``plan.horizon`` steps, and the first ``execute`` actions
run in the env. An episode succeeds when ``goal_distance <= success_distance`` at its end (it
ends early when the goal is reached, with ``plan.stop_at_goal``).

Energies:

- a world model (``plan.model`` = a path): L1 between the predicted latents and the goal
  image's latents, at the horizon (``energy=final``) or summed over it (``sum``);
- the **oracle** (``plan.model=oracle`` and the ``oracle`` baseline): the same planner on the
  true simulator dynamics, energy = the true goal distance; it bounds what planning can do.

Baselines on the same tasks: ``random`` (uniform random actions), ``random_model`` (the same
planner with a random-init world model of the same architecture) and ``oracle``.

The run folder gets ``report.json`` (success rates in percent with Wilson 95 % intervals,
``mean_final_distance``, ``seconds_per_action``, ``episodes``, the baselines),
``episodes.jsonl`` (one row per episode and method), ``config.yaml`` and the plots:
``trajectories.png`` (start, goal and path over the map), ``energy_landscape.png`` (the energy
over a 2-D grid of first actions) and ``episode.gif`` (one episode beside its goal image).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from vjepa.config import Config, PlanConfig, save_config
from vjepa.data.stages import seed_for
from vjepa.errors import UsageError
from vjepa.world.envs import action_bounds, check_protocol, make_env, render_frame, reset_to
from vjepa.world.planning.planners import Cost, cem, mppi

log = logging.getLogger(__name__)

# Domain tags keep the random streams of different methods apart.
_PLANNER, _RANDOM = 11, 12

# (frame, state, goal frame, goal state) -> the energy of action sequences from here.
CostBuilder = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Cost]


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


# Val task i is sample_task(task_seed + VAL_OFFSET + i), dev task i sample_task(task_seed + i):
# settings are chosen on dev tasks and reported on val tasks never used to choose them.
VAL_OFFSET = 500_000


def task_seed(pcfg: PlanConfig, task: int) -> int:
    """The ``sample_task`` seed of task ``task`` (0-based) of the ``plan.tasks`` split."""
    if not 0 <= task < VAL_OFFSET:
        raise ValueError(f"task index {task} outside [0, {VAL_OFFSET}): dev and val would overlap")
    return pcfg.task_seed + task + (VAL_OFFSET if pcfg.tasks == "val" else 0)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate, in percent (sound at 0 % and 100 %)."""
    if n == 0:
        return (0.0, 100.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (100 * max(0.0, centre - half), 100 * min(1.0, centre + half))


# ----------------------------------------------------------------------------------------
# Energies
# ----------------------------------------------------------------------------------------


def _reduce(distances: Tensor, energy: str) -> Tensor:
    """[N, H] per-step energies -> [N]."""
    if energy == "final":
        return distances[:, -1]
    if energy == "min":
        return distances.min(1).values
    return distances.sum(1)


class OracleCost:
    """Energies from the true simulator: roll the sequences out from the true state.

    Uses the env's batched ``step_states`` / ``state_distance`` when it has them, else a
    private copy of the env, reset into the state and stepped sequence by sequence.
    """

    def __init__(self, env: gym.Env, spec: str, energy: str) -> None:
        self.base = env.unwrapped
        self.energy = energy
        self.batched = hasattr(self.base, "step_states") and hasattr(self.base, "state_distance")
        self.sim = None if self.batched else make_env(spec).unwrapped

    def _rollout(self, state: np.ndarray, goal: np.ndarray, seqs: np.ndarray) -> np.ndarray:
        """Goal distances [N, H] along sequences [N, H, A] from ``state``."""
        n, h, _ = seqs.shape
        dist = np.empty((n, h))
        if self.batched:
            s = np.repeat(np.asarray(state)[None], n, axis=0)  # [N, S]
            for t in range(h):
                s = self.base.step_states(s, seqs[:, t])
                dist[:, t] = self.base.state_distance(s, goal)
            return dist
        for i in range(n):
            self.sim.reset(options={"state": state})
            for t in range(h):
                self.sim.step(seqs[i, t])
                dist[i, t] = self.sim.goal_distance(goal)
        return dist

    def __call__(
        self, frame: np.ndarray, state: np.ndarray, goal_frame: np.ndarray, goal: np.ndarray
    ) -> Cost:
        def cost(seqs: Tensor) -> Tensor:  # [N, H, A] -> [N]
            dist = self._rollout(state, goal, seqs.detach().cpu().numpy())
            return _reduce(torch.from_numpy(dist).to(seqs.device), self.energy)

        return cost


class ModelCost:
    """Energies from a world model: L1 between predicted latents and the goal image's latents.

    Codes to the WorldModel contract (vjepa/world/model.py): ``encode`` uint8 frames
    [B, T, H, W, 3] -> latents [B, T, N, D]; ``rollout(z, actions)`` -> [B, H, N, D];
    ``energy(z_pred [B, N, D], z_goal [1, N, D]) -> [B]``.
    """

    def __init__(self, model: Any, energy: str, device: torch.device) -> None:
        self.model, self.energy, self.device = model, energy, device
        self._goal_key: int | None = None
        self._z_goal: Tensor | None = None

    @torch.no_grad()
    def _encode(self, frame: np.ndarray) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)[None, None]
        return self.model.encode(x)  # [1, 1, N, D]

    def __call__(
        self, frame: np.ndarray, state: np.ndarray, goal_frame: np.ndarray, goal: np.ndarray
    ) -> Cost:
        key = hash(goal_frame.tobytes())
        if key != self._goal_key:  # one goal encoding per episode
            self._goal_key, self._z_goal = key, self._encode(goal_frame)[:, 0]  # [1, N, D]
        z0 = self._encode(frame)  # [1, 1, N, D]
        z_goal = self._z_goal

        @torch.no_grad()
        def cost(seqs: Tensor) -> Tensor:  # [N, H, A] -> [N]
            z = z0.expand(seqs.shape[0], *z0.shape[1:])  # [N, 1, Ntok, D]
            # [N, H / r, Ntok, D]: one latent map per model step (r = the model's frameskip)
            pred = self.model.rollout(z, seqs)
            if self.energy == "final":
                return self.model.energy(pred[:, -1], z_goal)
            per_step = torch.stack(
                [self.model.energy(pred[:, t], z_goal) for t in range(pred.shape[1])], 1
            )  # [N, H / r]
            return _reduce(per_step, self.energy)

        return cost


def check_model_env(model: Any, env: gym.Env, spec: str, pcfg: PlanConfig) -> None:
    """A world model must take the env's actions, and the horizon whole model steps."""
    low, _ = action_bounds(env)
    if int(model.action_dim) != low.shape[0]:
        raise UsageError(
            f"action-dimension mismatch: the world model takes {model.action_dim}-D actions, "
            f"env {spec!r} has {low.shape[0]}-D actions"
        )
    r = int(getattr(model, "frameskip", 1))
    if pcfg.horizon % r:
        raise UsageError(
            f"plan.horizon ({pcfg.horizon}) must be a multiple of the world model's frameskip ({r})"
        )


# ----------------------------------------------------------------------------------------
# Episodes
# ----------------------------------------------------------------------------------------


def _plan(cost: Cost, pcfg: PlanConfig, low: Tensor, high: Tensor, init: Tensor | None, gen):
    common = dict(
        horizon=pcfg.horizon,
        action_low=low,
        action_high=high,
        samples=pcfg.samples,
        iterations=pcfg.iterations,
        elites=min(pcfg.elites, pcfg.samples),
        generator=gen,
        init_mean=init,
        init_std=pcfg.init_std,
    )
    if pcfg.planner == "cem":
        return cem(cost, **common)
    return mppi(cost, temperature=pcfg.temperature, **common)


def run_episode(
    env: gym.Env,
    task: int,
    pcfg: PlanConfig,
    builder: CostBuilder | None,
    seed: int,
    method: str,
    frames: list[np.ndarray] | None = None,
) -> Episode:
    """One task with the planner on ``builder``'s energy, or random actions (builder None)."""
    base = env.unwrapped
    start, goal = base.sample_task(task_seed(pcfg, task))
    goal_frame = reset_to(env, goal)
    frame = reset_to(env, start)
    device = torch.device(pcfg.device)
    low_np, high_np = action_bounds(env)
    low, high = torch.from_numpy(low_np).to(device), torch.from_numpy(high_np).to(device)
    gen = torch.Generator(device).manual_seed(seed_for(seed, _PLANNER, task))
    rng = np.random.default_rng(seed_for(seed, _RANDOM, task))
    states = [np.asarray(base.get_state(), dtype=np.float64).tolist()]
    if frames is not None:
        frames.append(frame)
    plan: Tensor | None = None
    plan_seconds, steps = 0.0, 0
    while steps < pcfg.max_steps:
        if pcfg.stop_at_goal and base.goal_distance(goal) <= base.success_distance:
            break
        if builder is None:
            actions = rng.uniform(low_np, high_np, size=(1, low_np.shape[0])).astype(np.float32)
        else:
            t0 = time.perf_counter()
            init = None
            if plan is not None:  # warm start: the rest of the last plan, then its last action
                init = torch.cat([plan[pcfg.execute :], plan[-1:].expand(pcfg.execute, -1)])
            cost = builder(frame, base.get_state(), goal_frame, goal)
            plan = _plan(
                cost, pcfg, low, high, init[: pcfg.horizon] if init is not None else None, gen
            )
            plan_seconds += time.perf_counter() - t0
            actions = plan[: pcfg.execute].cpu().numpy()
        for a in actions[: pcfg.max_steps - steps]:
            env.step(a)
            steps += 1
            states.append(np.asarray(base.get_state(), dtype=np.float64).tolist())
            frame = render_frame(env)
            if frames is not None:
                frames.append(frame)
            if pcfg.stop_at_goal and base.goal_distance(goal) <= base.success_distance:
                break
    dist = float(base.goal_distance(goal))
    return Episode(method, task, dist <= base.success_distance, dist, steps, plan_seconds, states)


def evaluate(
    env: gym.Env,
    pcfg: PlanConfig,
    builder: CostBuilder | None,
    seed: int,
    method: str,
    frames: list[np.ndarray] | None = None,
) -> list[Episode]:
    """Every held-out task with one method (frames of the first episode into ``frames``)."""
    episodes = []
    for task in range(pcfg.episodes):
        episodes.append(
            run_episode(env, task, pcfg, builder, seed, method, frames if task == 0 else None)
        )
    return episodes


def summarize(episodes: list[Episode]) -> dict[str, Any]:
    """Success rate (percent) with its 95 % interval, mean final distance, time per action."""
    n = len(episodes)
    k = sum(e.success for e in episodes)
    lo, hi = wilson_interval(k, n)
    actions = sum(e.steps for e in episodes)
    plan_seconds = sum(e.plan_seconds for e in episodes)
    return {
        "success_rate": 100.0 * k / n if n else 0.0,
        "success_rate_ci95": [lo, hi],
        "mean_final_distance": float(np.mean([e.final_distance for e in episodes])) if n else None,
        "seconds_per_action": plan_seconds / actions if actions else 0.0,
        "episodes": n,
    }


# ----------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------


def _load_models(pcfg: PlanConfig, device: torch.device) -> tuple[Any, Any]:
    """(world model, its random-init twin) from plan.model; (None, None) for the oracle."""
    if pcfg.model == "oracle":
        return None, None
    from vjepa.world.io import load_world_model, random_init_like

    model = load_world_model(pcfg.model).to(device).eval()
    twin = None
    if "random_model" in pcfg.baselines:
        twin = random_init_like(model, seed=0).to(device).eval()
    return model, twin


def run_plan(cfg: Config) -> dict[str, Any]:
    """Evaluate MPC on ``cfg.plan.episodes`` tasks; writes and returns report.json's dict."""
    pcfg = cfg.plan
    if pcfg.episodes > VAL_OFFSET:
        raise UsageError(
            f"plan.episodes={pcfg.episodes} > {VAL_OFFSET}: dev and val tasks would overlap"
        )
    out = Path(cfg.run.dir)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(pcfg.env)
    check_protocol(env, pcfg.env)
    device = torch.device(pcfg.device)
    model, twin = _load_models(pcfg, device)
    if model is not None:
        check_model_env(model, env, pcfg.env, pcfg)
    save_config(cfg, out / "config.yaml")
    oracle = OracleCost(env, pcfg.env, pcfg.energy)
    main_builder: CostBuilder = oracle if model is None else ModelCost(model, pcfg.energy, device)
    method = "oracle" if model is None else "model"

    frames: list[np.ndarray] = []
    results: dict[str, list[Episode]] = {
        method: evaluate(env, pcfg, main_builder, cfg.run.seed, method, frames)
    }
    if "random" in pcfg.baselines:
        results["random"] = evaluate(env, pcfg, None, cfg.run.seed, "random")
    if twin is not None:
        twin_cost = ModelCost(twin, pcfg.energy, device)
        results["random_model"] = evaluate(env, pcfg, twin_cost, cfg.run.seed, "random_model")
    if "oracle" in pcfg.baselines and method != "oracle":
        results["oracle"] = evaluate(env, pcfg, oracle, cfg.run.seed, "oracle")

    report = _report(pcfg, method, results)
    with open(out / "episodes.jsonl", "w") as f:
        for eps in results.values():
            for e in eps:
                f.write(json.dumps(asdict(e)) + "\n")
    if pcfg.plots:
        from vjepa.world.planning import plots as plan_plots

        plan_plots.write_all(out, env, pcfg, results, frames, main_builder)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    return report


def _report(pcfg: PlanConfig, method: str, results: dict[str, list[Episode]]) -> dict:
    main = summarize(results[method])
    report: dict[str, Any] = {
        "env": pcfg.env,
        "model": pcfg.model,
        "planner": pcfg.planner,
        "tasks": pcfg.tasks,
        "first_task_seed": task_seed(pcfg, 0),
        **main,
    }
    for name in ("random", "random_model", "oracle"):
        rate = None
        if name == "oracle" and method == "oracle":
            rate = main["success_rate"]
        elif name in results:
            rate = summarize(results[name])["success_rate"]
        report[f"{name}_success_rate"] = rate
    report["methods"] = {name: summarize(eps) for name, eps in results.items()}
    return report


def format_report(report: dict) -> str:
    lines = [f"{'method':<14} {'success %':>10} {'95% CI':>15} {'final dist':>11} {'s/action':>9}"]
    for name, r in report["methods"].items():
        lo, hi = r["success_rate_ci95"]
        lines.append(
            f"{name:<14} {r['success_rate']:>10.1f} {f'[{lo:.1f}, {hi:.1f}]':>15} "
            f"{r['mean_final_distance']:>11.3f} {r['seconds_per_action']:>9.3f}"
        )
    return "\n".join(lines)
