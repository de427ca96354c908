"""What trajectories.png shows of an env without ``state_xy``: the goal distance along each
executed episode and a strip of frames, computed by replaying the recorded states.

Kept apart from mpc.py (the runner) and plots.py (drawing only): it needs the env, the
recorded :class:`vjepa.world.planning.report.Episode` states and a :class:`TaskView`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from vjepa.world.envs import reset_to
from vjepa.world.planning.plots import TaskView
from vjepa.world.planning.report import Episode

__all__ = ["add_episode_views"]


def _distances(env: gym.Env, states: list[list[float]], goal: np.ndarray) -> list[float]:
    """``goal_distance(goal)`` at every recorded state (the env reset into each one)."""
    base = env.unwrapped
    out = []
    for state in states:
        reset_to(env, np.asarray(state))
        out.append(float(base.goal_distance(goal)))
    return out


def add_episode_views(
    env: gym.Env, views: list[TaskView], results: dict[str, list[Episode]]
) -> list[TaskView]:
    """Fill each view's ``distances`` (method -> goal distance per step) and ``strip``
    (start, middle and end frame of the first method's episode, then the goal render)."""
    main = next(iter(results))
    for view in views:
        for method, episodes in results.items():
            ep = next(e for e in episodes if e.task == view.task)
            view.distances[method] = _distances(env, ep.states, view.goal)
        states = next(e for e in results[main] if e.task == view.task).states
        picks = (("start", 0), ("middle", len(states) // 2), ("end", len(states) - 1))
        view.strip = [(name, reset_to(env, np.asarray(states[i]))) for name, i in picks]
        view.strip.append(("goal", view.goal_frame))
    return views
