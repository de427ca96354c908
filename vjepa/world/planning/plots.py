"""Plots of a `vjepa plan` run: trajectories over the map, the energy landscape, one episode.

- ``trajectories.png``: for the first tasks, the render at the start state as the map, the
  executed path (planner solid, random actions dotted), the start (circle) and goal (star).
  Positions come from the env's optional ``state_xy(states) -> [N, 2]`` pixel coordinates,
  else from the first two state values scaled to the frame.
- ``energy_landscape.png``: the planner's energy at the first task's start over a 2-D grid of
  first actions (action dims 0 and 1 over their bounds), the rest of the sequence held at the
  plan the planner chose there; as in the vjepa2 notebook's landscape of the first action.
- ``episode.gif``: the first task's frames beside its goal image.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from vjepa.config import PlanConfig
from vjepa.train.plots import _pyplot
from vjepa.world.envs import action_bounds, reset_to
from vjepa.world.planning.mpc import task_seed

GRID = 25


def _xy(env: gym.Env, states: np.ndarray, size: int) -> np.ndarray:
    base = env.unwrapped
    states = np.asarray(states, dtype=np.float64).reshape(len(states), -1)
    if hasattr(base, "state_xy"):
        return np.asarray(base.state_xy(states))
    return states[:, :2] * size  # a guess: positions in [0, 1]


def plot_trajectories(env: gym.Env, pcfg: PlanConfig, results: dict, path: Path, n: int = 6):
    plt = _pyplot()
    main = next(iter(results))
    tasks = [e.task for e in results[main][:n]]
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks), 3.0), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        start, goal = env.unwrapped.sample_task(task_seed(pcfg, task))
        frame = reset_to(env, start)
        size = frame.shape[0]
        ax.imshow(frame, extent=(0, frame.shape[1], frame.shape[0], 0))
        for name, eps in results.items():
            ep = next(e for e in eps if e.task == task)
            xy = _xy(env, np.asarray(ep.states), size)
            style = ":" if name == "random" else "-"
            ax.plot(
                xy[:, 0],
                xy[:, 1],
                style,
                lw=1.3,
                label=f"{name} ({'ok' if ep.success else 'fail'})",
            )
        s, g = _xy(env, start[None], size)[0], _xy(env, goal[None], size)[0]
        ax.plot(*s, "o", ms=8, mfc="none", mec="k", mew=1.5)
        ax.plot(*g, "*", ms=12, color="gold", mec="k")
        ax.set_title(f"task {task}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        ax.legend(fontsize=6, loc="lower left")
    fig.suptitle(f"{pcfg.env}: start (o), goal (*), executed paths", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_energy_landscape(env: gym.Env, pcfg: PlanConfig, builder, path: Path, seed: int):
    """Energy over a grid of first actions at the first task's start (the rest of the plan fixed)."""
    from vjepa.world.planning.mpc import _plan

    plt = _pyplot()
    start, goal = env.unwrapped.sample_task(task_seed(pcfg, 0))
    goal_frame = reset_to(env, goal)
    frame = reset_to(env, start)
    low_np, high_np = action_bounds(env)
    device = torch.device(pcfg.device)
    low, high = torch.from_numpy(low_np).to(device), torch.from_numpy(high_np).to(device)
    cost = builder(frame, env.unwrapped.get_state(), goal_frame, goal)
    plan = _plan(cost, pcfg, low, high, None, torch.Generator(device).manual_seed(seed))  # [H, A]
    if low_np.shape[0] < 2:
        return None
    g0 = torch.linspace(float(low[0]), float(high[0]), GRID, device=device)
    g1 = torch.linspace(float(low[1]), float(high[1]), GRID, device=device)
    seqs = plan.expand(GRID * GRID, -1, -1).clone()  # [G*G, H, A]
    a0, a1 = torch.meshgrid(g0, g1, indexing="ij")
    seqs[:, 0, 0], seqs[:, 0, 1] = a0.reshape(-1), a1.reshape(-1)
    # Larger chunks than the planner's population: one batched pass per 1024 sequences.
    energy = torch.cat([cost(chunk) for chunk in seqs.split(max(pcfg.samples, 1024))])
    energy = energy.reshape(GRID, GRID)
    e = energy.cpu().numpy()
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(
        e.T,
        origin="lower",
        extent=(float(low[0]), float(high[0]), float(low[1]), float(high[1])),
        cmap="viridis",
    )
    i, j = np.unravel_index(np.argmin(e), e.shape)
    ax.plot(g0[i].item(), g1[j].item(), "w*", ms=12, label="grid minimum")
    ax.plot(plan[0, 0].item(), plan[0, 1].item(), "rx", ms=10, mew=2, label="planned")
    ax.set_xlabel("first action, dim 0"), ax.set_ylabel("first action, dim 1")
    ax.legend(fontsize=7)
    fig.colorbar(im, ax=ax, label=f"energy ({pcfg.energy})")
    ax.set_title("energy over the first action (task 0, start)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_gif(frames: list[np.ndarray], goal_frame: np.ndarray, path: Path, fps: float = 10):
    """Frames [H, W, 3] beside the goal image, scaled x3 (nearest), as an animated GIF."""
    from PIL import Image

    if not frames:
        return None
    images = []
    for f in frames:
        both = np.concatenate([f, np.full((f.shape[0], 2, 3), 255, np.uint8), goal_frame], 1)
        both = both.repeat(3, 0).repeat(3, 1)  # [3H, 3(2W+2), 3]
        images.append(Image.fromarray(both))
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def write_all(out: Path, env: gym.Env, pcfg: PlanConfig, results: dict, frames: list, builder):
    plot_trajectories(env, pcfg, results, out / "trajectories.png")
    plot_energy_landscape(env, pcfg, builder, out / "energy_landscape.png", seed=0)
    _, goal = env.unwrapped.sample_task(task_seed(pcfg, 0))
    write_gif(frames, reset_to(env, goal), out / "episode.gif")
