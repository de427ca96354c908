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

The energies are :mod:`vjepa.world.planning.costs`, the search
:func:`vjepa.world.planning.planners.plan_actions`, the summaries
:mod:`vjepa.world.planning.report`. The run folder gets ``report.json`` (success rates in percent with Wilson 95 % intervals,
``mean_final_distance``, ``seconds_per_action``, ``episodes``, the baselines),
``episodes.jsonl`` (one row per episode and method), ``config.yaml`` and the plots:
``trajectories.png`` (start, goal and path over the map), ``energy_landscape.png`` (the energy
over a 2-D grid of first actions) and ``episode.gif`` (one episode beside its goal image).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from vjepa.config import Config, PlanConfig, save_config
from vjepa.data.stages import seed_for
from vjepa.errors import UsageError
from vjepa.train.faults import hold_run_folder
from vjepa.world.envs import action_bounds, check_protocol, make_env, render_frame, reset_to
from vjepa.world.io import load_world_model, random_init_like
from vjepa.world.planning import plots
from vjepa.world.planning.budget import apply_goal_offset, episode_budget
from vjepa.world.planning.costs import CostBuilder, ModelCost, OracleCost, has_batched_dynamics
from vjepa.world.planning.guard import guarded_model_cost, guarded_oracle_cost
from vjepa.world.planning.hierarchy import HighLevel, high_level
from vjepa.world.planning.planners import plan_actions
from vjepa.world.planning.report import (
    Episode,
    build_report,
    format_report,
    hierarchy_summary,
)
from vjepa.world.planning.views import add_episode_views

log = logging.getLogger(__name__)

# Domain tags keep the random streams of different methods apart.
_PLANNER, _RANDOM = 11, 12

# Val task i is sample_task(task_seed + VAL_OFFSET + i), dev task i sample_task(task_seed + i):
# settings are chosen on dev tasks and reported on val tasks never used to choose them.
VAL_OFFSET = 500_000


def task_seed(pcfg: PlanConfig, task: int) -> int:
    """The ``sample_task`` seed of task ``task`` (0-based) of the ``plan.tasks`` split."""
    if not 0 <= task < VAL_OFFSET:
        raise ValueError(f"task index {task} outside [0, {VAL_OFFSET}): dev and val would overlap")
    return pcfg.task_seed + task + (VAL_OFFSET if pcfg.tasks == "val" else 0)


def oracle_cost(env: gym.Env, spec: str, energy: str) -> OracleCost:
    """The oracle's cost builder for ``env`` (with a private copy of it when it has no batched
    dynamics)."""
    return OracleCost(env, energy, sim=None if has_batched_dynamics(env) else make_env(spec))


def model_cost(model: Any, pcfg: PlanConfig, device: torch.device) -> ModelCost:
    """The cost builder of a world model with ``plan.energy`` (what ``WorldModel.plan`` uses);
    a model with a discrete latent: ``plan.futures`` futures per sequence, reduced by
    ``plan.risk``."""
    return ModelCost(
        model,
        pcfg.energy,
        device,
        risk=pcfg.risk,
        alpha=pcfg.cvar_alpha,
        futures=pcfg.futures,
        goal_cost=pcfg.goal_cost,
        tempo_weight=pcfg.tempo_weight,
    )


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


def _bounds(env: gym.Env, device: torch.device) -> tuple[Tensor, Tensor]:
    low, high = action_bounds(env)
    return torch.from_numpy(low).to(device), torch.from_numpy(high).to(device)


@dataclass(frozen=True)
class Method:
    """One way of choosing actions, named ``name`` in the report: the planner on ``builder``'s
    energy, or uniform random actions (builder None); with ``high`` (plan.levels=2) the planner
    aims at its subgoals instead of the goal."""

    name: str
    builder: CostBuilder | None = None
    high: HighLevel | None = None


def run_episode(
    env: gym.Env,
    task: int,
    pcfg: PlanConfig,
    method: Method,
    seed: int,
    frames: list[np.ndarray] | None = None,
) -> Episode:
    """Task ``task`` (0-based, of the plan.tasks split) with ``method`` (frames into ``frames``)."""
    builder, high = method.builder, method.high
    base = env.unwrapped
    start, goal = base.sample_task(task_seed(pcfg, task))
    goal_frame = reset_to(env, goal)
    frame = reset_to(env, start)
    device = torch.device(pcfg.device)
    low_np, high_np = action_bounds(env)
    low, high_b = _bounds(env, device)
    gen = torch.Generator(device).manual_seed(seed_for(seed, _PLANNER, task))
    rng = np.random.default_rng(seed_for(seed, _RANDOM, task))
    states = [np.asarray(base.get_state(), dtype=np.float64).tolist()]
    if frames is not None:
        frames.append(frame)
    plan: Tensor | None = None
    plan_seconds, steps, calls = 0.0, 0, [0]
    flags: list[bool] | None = None
    max_steps = episode_budget(env, pcfg)[0]
    if high is not None:
        high.start(goal_frame, goal)
    while steps < max_steps:
        if pcfg.stop_at_goal and base.goal_distance(goal) <= base.success_distance:
            break
        if builder is None:
            actions = rng.uniform(low_np, high_np, size=(1, low_np.shape[0])).astype(np.float32)
        else:
            t0 = time.perf_counter()
            init = None
            if plan is not None:  # warm start: the rest of the last plan, then its last action
                init = torch.cat([plan[pcfg.execute :], plan[-1:].expand(pcfg.execute, -1)])
                init = init[: pcfg.horizon]  # [H, A]
            target_frame, target = goal_frame, goal
            if high is not None:
                target_frame, target = high.target(frame, base.get_state(), goal_frame, goal, steps)
            cost = _counted(builder(frame, base.get_state(), target_frame, target), calls)
            plan = plan_actions(cost, pcfg, low, high_b, init, generator=gen)  # [H, A]
            if hasattr(builder, "update"):  # the guardrail's dual ascent across replans
                builder.update(plan)
            plan_seconds += time.perf_counter() - t0
            actions = plan[: pcfg.execute].cpu().numpy()
        for a in actions[: max_steps - steps]:
            info = env.step(a)[-1]
            if "violation" in info:
                flags = (flags or []) + [bool(info["violation"])]
            steps += 1
            if high is not None:
                high.observe(base, steps)
            states.append(np.asarray(base.get_state(), dtype=np.float64).tolist())
            frame = render_frame(env)
            if frames is not None:
                frames.append(frame)
            if pcfg.stop_at_goal and base.goal_distance(goal) <= base.success_distance:
                break
    dist = float(base.goal_distance(goal))
    subgoals = (high.proposed, high.reached) if high is not None else (0, 0)
    success = dist <= base.success_distance
    return Episode(
        method.name, task, success, dist, steps, plan_seconds, states, calls[0], *subgoals, flags
    )


def _counted(cost: Any, calls: list[int]) -> Any:
    """``cost`` that counts its calls (one batched rollout of the predictor each) in calls[0]."""

    def counted(seqs: Tensor) -> Any:
        calls[0] += 1
        return cost(seqs)

    return counted


def evaluate(
    env: gym.Env,
    pcfg: PlanConfig,
    method: Method,
    seed: int,
    frames: list[np.ndarray] | None = None,
) -> list[Episode]:
    """Every held-out task with ``method`` (frames of the first episode into ``frames``)."""
    return [
        run_episode(env, task, pcfg, method, seed, frames if task == 0 else None)
        for task in range(pcfg.episodes)
    ]


# ----------------------------------------------------------------------------------------
# What the plots show (computed here; plots.py only draws)
# ----------------------------------------------------------------------------------------


def task_views(env: gym.Env, pcfg: PlanConfig, tasks: list[int]) -> list[plots.TaskView]:
    """Start render, start and goal state (and goal render) of each of ``tasks``."""
    views = []
    for task in tasks:
        start, goal = env.unwrapped.sample_task(task_seed(pcfg, task))
        goal_frame = reset_to(env, goal)
        views.append(plots.TaskView(task, reset_to(env, start), goal_frame, start, goal))
    return views


def energy_landscape(
    env: gym.Env, pcfg: PlanConfig, builder: CostBuilder, seed: int = 0
) -> plots.Landscape | None:
    """The energy at the first task's start over a grid of first actions (action dims 0 and
    1 over their bounds), the rest of the sequence held at the plan the planner chooses
    there (generator seeded with ``seed``); None for 1-D actions."""
    start, goal = env.unwrapped.sample_task(task_seed(pcfg, 0))
    goal_frame = reset_to(env, goal)
    frame = reset_to(env, start)
    device = torch.device(pcfg.device)
    low, high = _bounds(env, device)
    cost = builder(frame, env.unwrapped.get_state(), goal_frame, goal)
    gen = torch.Generator(device).manual_seed(seed)
    plan = plan_actions(cost, pcfg, low, high, None, generator=gen)  # [H, A]
    if low.shape[0] < 2:
        return None
    G = plots.GRID
    g0 = torch.linspace(float(low[0]), float(high[0]), G, device=device)  # [G]
    g1 = torch.linspace(float(low[1]), float(high[1]), G, device=device)  # [G]
    seqs = plan.expand(G * G, -1, -1).clone()  # [G*G, H, A]
    a0, a1 = torch.meshgrid(g0, g1, indexing="ij")
    seqs[:, 0, 0], seqs[:, 0, 1] = a0.reshape(-1), a1.reshape(-1)
    # Larger chunks than the planner's population: one batched pass per 1024 sequences.
    scored = [cost(chunk) for chunk in seqs.split(max(pcfg.samples, 1024))]
    energy = torch.cat([e[0] if isinstance(e, tuple) else e for e in scored])  # guard: (E, viol)
    return plots.Landscape(
        g0=g0.cpu().numpy(),
        g1=g1.cpu().numpy(),
        energy=energy.reshape(G, G).cpu().numpy(),  # [G, G]
        planned=plan[0, :2].cpu().numpy(),
        low=(float(low[0]), float(low[1])),
        high=(float(high[0]), float(high[1])),
    )


def write_plots(
    out: Path,
    env: gym.Env,
    pcfg: PlanConfig,
    results: dict[str, list[Episode]],
    frames: list[np.ndarray],
    builder: CostBuilder,
) -> None:
    """trajectories.png, energy_landscape.png and episode.gif of a finished run."""
    main = next(iter(results))
    views = task_views(env, pcfg, [e.task for e in results[main][: plots.TRAJECTORY_TASKS]])
    if not hasattr(env.unwrapped, "state_xy"):  # no map: goal distances and frames instead
        views = add_episode_views(env, views, results)
    plots.plot_trajectories(env, pcfg.env, results, views, out / "trajectories.png")
    landscape = energy_landscape(env, pcfg, builder, seed=0)
    if landscape is not None:
        plots.plot_energy_landscape(landscape, pcfg.energy, out / "energy_landscape.png")
    plots.write_gif(frames, task_views(env, pcfg, [0])[0].goal_frame, out / "episode.gif")


# ----------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------


def _load_models(pcfg: PlanConfig, device: torch.device) -> tuple[Any, Any]:
    """(world model, its random-init twin) from plan.model; (None, None) for the oracle."""
    if pcfg.model == "oracle":
        return None, None
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
    with hold_run_folder(cfg.run.dir):
        return _run_plan(cfg)


def _run_plan(cfg: Config) -> dict[str, Any]:
    pcfg = cfg.plan
    out = Path(cfg.run.dir)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(pcfg.env)
    check_protocol(env, pcfg.env)
    goal_offset = apply_goal_offset(env, pcfg)
    device = torch.device(pcfg.device)
    model, twin = _load_models(pcfg, device)
    if model is not None:
        check_model_env(model, env, pcfg.env, pcfg)
    save_config(cfg, out / "config.yaml")
    plain_oracle = oracle_cost(env, pcfg.env, pcfg.energy)
    oracle = guarded_oracle_cost(env, pcfg) or plain_oracle
    main_builder: CostBuilder = oracle if model is None else model_cost(model, pcfg, device)
    if model is not None:
        main_builder = guarded_model_cost(model, pcfg, device) or main_builder
    # the same model and planner with every guardrail weight at 0
    free_builder = plain_oracle if model is None else model_cost(model, pcfg, device)
    method = "oracle" if model is None else "model"

    high = high_level(pcfg, env, model, device) if pcfg.levels == 2 else None
    frames: list[np.ndarray] = []
    seed = cfg.run.seed
    results = {method: evaluate(env, pcfg, Method(method, main_builder, high), seed, frames)}
    others = []
    if high is not None:  # the same model and planner, flat, on the same tasks
        others.append(Method("flat", main_builder))
    if hasattr(main_builder, "guard") and any(e.violations is not None for e in results[method]):
        others.append(Method("unconstrained", free_builder))
    if "random" in pcfg.baselines:
        others.append(Method("random"))
    if twin is not None:
        others.append(Method("random_model", model_cost(twin, pcfg, device)))
    if "oracle" in pcfg.baselines and method != "oracle":
        others.append(Method("oracle", oracle))
    results |= {m.name: evaluate(env, pcfg, m, seed) for m in others}

    report = build_report(pcfg, method, results, task_seed(pcfg, 0))
    budget, budget_source = episode_budget(env, pcfg)
    report |= {"max_steps": budget, "max_steps_source": budget_source}
    report |= {"goal_offset": goal_offset, "levels": pcfg.levels}
    if model is not None:  # which goal term the world model's planner minimised
        report |= {"goal_cost": pcfg.goal_cost}
        if pcfg.goal_cost == "blend":
            report |= {"tempo_weight": pcfg.tempo_weight}
    if model is not None and getattr(model, "codes", 0):  # a discrete latent: K and the risk
        report |= {
            "latent_codes": int(model.codes),
            "futures": pcfg.futures or int(model.codes),
            "risk": pcfg.risk,
            "cvar_alpha": pcfg.cvar_alpha,
        }
    if model is not None and getattr(model, "z_dim", 0):  # a continuous latent: its draws
        report |= {
            "latent_dim_z": int(model.z_dim),
            "futures": pcfg.futures,
            "risk": pcfg.risk,
            "cvar_alpha": pcfg.cvar_alpha,
        }
    if high is not None:
        report |= hierarchy_summary(results[method], results["flat"])
    with open(out / "episodes.jsonl", "w") as f:
        for eps in results.values():
            for e in eps:
                f.write(json.dumps(asdict(e)) + "\n")
    if pcfg.plots:
        write_plots(out, env, pcfg, results, frames, main_builder)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    return report
