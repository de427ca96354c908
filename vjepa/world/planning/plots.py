"""Plots of a `vjepa plan` run, drawn from results the runner (mpc.py) already computed.

- ``trajectories.png``: for the first tasks, the render at the start state as the map, the
  executed path (planner solid, random actions dotted), the start (circle) and goal (star).
  Positions come from the env's optional ``state_xy(states) -> [N, 2]`` pixel coordinates.
  An env without ``state_xy`` gets the goal distance over each episode (every method, one
  scale for all tasks) and a strip of frames (start, middle, end, goal) instead.
- ``energy_landscape.png``: the planner's energy at the first task's start over a 2-D grid of
  first actions (a :class:`Landscape`); as in the vjepa2 notebook's landscape of the first
  action.
- ``episode.gif``: the first task's frames beside its goal image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image

from vjepa.train.plots import _pyplot

GRID = 25
"""Side of the energy landscape's grid of first actions."""
TRAJECTORY_TASKS = 6
"""Tasks drawn in trajectories.png."""


@dataclass
class TaskView:
    """What a plot shows of one task: its renders at the start and the goal, and the states."""

    task: int
    start_frame: np.ndarray
    goal_frame: np.ndarray
    start: np.ndarray
    goal: np.ndarray
    distances: dict[str, list[float]] = field(default_factory=dict)
    """Method -> goal distance at every step of its episode (envs without ``state_xy``)."""
    strip: list[tuple[str, np.ndarray]] = field(default_factory=list)
    """(label, frame [H, W, 3]): start, middle, end of the first method's episode, goal."""


@dataclass
class Landscape:
    """The energy over a grid of first actions, the rest of the plan held fixed."""

    g0: np.ndarray
    """[G] values of action dim 0."""
    g1: np.ndarray
    """[G] values of action dim 1."""
    energy: np.ndarray
    """[G, G] energy, indexed [dim-0 value, dim-1 value]."""
    planned: np.ndarray
    """[2] the planner's first action (dims 0 and 1)."""
    low: tuple[float, float]
    high: tuple[float, float]


def _xy(env: gym.Env, states: np.ndarray, size: int) -> np.ndarray:
    """Pixel positions [N, 2] of ``states`` from the env's ``state_xy`` (``size`` unused)."""
    states = np.asarray(states, dtype=np.float64).reshape(len(states), -1)
    return np.asarray(env.unwrapped.state_xy(states))


def plot_trajectories(
    env: gym.Env, env_name: str, results: dict, views: list[TaskView], path: Path
) -> Path:
    """Each task of ``views``: the executed paths of every method of ``results`` over its map
    when the env has ``state_xy``, else the goal distance over the episode and a frame strip
    (:func:`plot_goal_distances`)."""
    if not hasattr(env.unwrapped, "state_xy"):
        return plot_goal_distances(env, env_name, views, path)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(views), figsize=(2.6 * len(views), 3.0), squeeze=False)
    for ax, view in zip(axes[0], views):
        frame = view.start_frame
        size = frame.shape[0]
        ax.imshow(frame, extent=(0, frame.shape[1], frame.shape[0], 0))
        for name, eps in results.items():
            ep = next(e for e in eps if e.task == view.task)
            xy = _xy(env, np.asarray(ep.states), size)
            style = ":" if name == "random" else "-"
            ax.plot(
                xy[:, 0],
                xy[:, 1],
                style,
                lw=1.3,
                label=f"{name} ({'ok' if ep.success else 'fail'})",
            )
            if ep.violations:  # states[1:] follow the flagged steps: mark the violating ones
                bad = np.flatnonzero(ep.violations) + 1
                ax.plot(xy[bad, 0], xy[bad, 1], "x", color="k", ms=4, mew=1.0)
        s, g = _xy(env, view.start[None], size)[0], _xy(env, view.goal[None], size)[0]
        ax.plot(*s, "o", ms=8, mfc="none", mec="k", mew=1.5)
        ax.plot(*g, "*", ms=12, color="gold", mec="k")
        ax.set_title(f"task {view.task}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        ax.legend(fontsize=6, loc="lower left")
    fig.suptitle(f"{env_name}: start (o), goal (*), executed paths, violations (x)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _strip(frames: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Frames side by side with 2 white pixels between them: [H, n * W + 2 (n - 1), 3]."""
    gap = np.full((frames[0][1].shape[0], 2, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i, (_, f) in enumerate(frames):
        parts += [gap, f] if i else [f]
    return np.concatenate(parts, axis=1)


def plot_goal_distances(env: gym.Env, env_name: str, views: list[TaskView], path: Path) -> Path:
    """Per task (column): the goal distance over the episode of every method (top; one y
    scale for every panel, the success distance dashed) and the start / middle / end frames
    of the first method's episode beside the goal (bottom). ``views`` carry ``distances`` and
    ``strip`` (vjepa.world.planning.views.add_episode_views)."""
    plt = _pyplot()
    n = len(views)
    fig, axes = plt.subplots(
        2, n, figsize=(3.4 * n, 4.6), squeeze=False, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    top = max((max(d) for v in views for d in v.distances.values() if d), default=1.0)
    success = float(env.unwrapped.success_distance)
    for col, view in enumerate(views):
        ax = axes[0][col]
        for name, dist in view.distances.items():
            ax.plot(range(len(dist)), dist, ":" if name == "random" else "-", lw=1.3, label=name)
        ax.axhline(success, color="k", ls="--", lw=0.8, label="success distance")
        ax.set_ylim(0, 1.05 * max(top, success))  # one scale for every panel
        ax.set_title(f"task {view.task}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        if col == 0:
            ax.set_ylabel("goal distance", fontsize=8)
            ax.legend(fontsize=6)
        strip = axes[1][col]
        if view.strip:
            img = _strip(view.strip)
            strip.imshow(img)
            w = view.strip[0][1].shape[1]
            strip.set_xticks([i * (w + 2) + w / 2 for i in range(len(view.strip))])
            strip.set_xticklabels([name for name, _ in view.strip], fontsize=7)
        else:
            strip.set_xticks([])
        strip.set_yticks([])
    first = next(iter(views[0].distances), "") if views else ""
    fig.suptitle(
        f"{Path(env_name).name}: goal distance over the episode; frames of {first} (start, "
        "middle, end) "
        "and the goal",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_energy_landscape(land: Landscape, energy_name: str, path: Path) -> Path:
    """The energy over the grid of first actions, its minimum and the planned action."""
    plt = _pyplot()
    e = land.energy
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(
        e.T,
        origin="lower",
        extent=(land.low[0], land.high[0], land.low[1], land.high[1]),
        cmap="viridis",
    )
    i, j = np.unravel_index(np.argmin(e), e.shape)
    ax.plot(land.g0[i].item(), land.g1[j].item(), "w*", ms=12, label="grid minimum")
    ax.plot(land.planned[0].item(), land.planned[1].item(), "rx", ms=10, mew=2, label="planned")
    ax.set_xlabel("first action, dim 0"), ax.set_ylabel("first action, dim 1")
    ax.legend(fontsize=7)
    fig.colorbar(im, ax=ax, label=f"energy ({energy_name})")
    ax.set_title("energy over the first action (task 0, start)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_gif(
    frames: list[np.ndarray], goal_frame: np.ndarray, path: Path, fps: float = 10
) -> Path | None:
    """Frames [H, W, 3] beside the goal image, scaled x3 (nearest), as an animated GIF."""
    if not frames:
        return None
    images = []
    for f in frames:
        both = np.concatenate([f, np.full((f.shape[0], 2, 3), 255, np.uint8), goal_frame], 1)
        both = both.repeat(3, 0).repeat(3, 1)  # [3H, 3(2W+2), 3]
        images.append(Image.fromarray(both))
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
