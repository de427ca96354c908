"""What an episode of `vjepa plan` takes from the env: its step budget and its goal offset.

- :func:`episode_budget`: ``plan.max_steps`` when set; else the env's declared
  ``max_episode_steps`` (an attribute of ``env.unwrapped``, else its gymnasium registration);
  else ``plan.fallback_steps``. The long-horizon envs (vjepa/Maze-v0: 200) and the benchmark
  adapters (vjepa/PushT-v0, vjepa/DMCReacher-v0: 50) declare theirs, so `vjepa demo world`
  plans them with the budget their protocol names.
- :func:`apply_goal_offset`: ``plan.goal_offset`` set on an env whose ``sample_task`` reads a
  ``goal_offset`` attribute (the stable-worldmodel protocol: the goal is the state that many
  steps ahead on a trajectory of the data-collection policy).
"""

from __future__ import annotations

import gymnasium as gym

from vjepa.config import ConfigError, PlanConfig


def declared_budget(env: gym.Env) -> int | None:
    """The env's own ``max_episode_steps``: the attribute, else the registration's, else None."""
    value = getattr(env.unwrapped, "max_episode_steps", None)
    if value is None and env.spec is not None:
        value = env.spec.max_episode_steps
    return int(value) if value is not None else None


def episode_budget(env: gym.Env, pcfg: PlanConfig) -> tuple[int, str]:
    """(env steps per episode, where the number came from: plan.max_steps | env | fallback)."""
    if pcfg.max_steps is not None:
        return int(pcfg.max_steps), "plan.max_steps"
    declared = declared_budget(env)
    if declared is not None:
        return declared, "env"
    return int(pcfg.fallback_steps), "plan.fallback_steps"


def apply_goal_offset(env: gym.Env, pcfg: PlanConfig) -> int | None:
    """Set ``plan.goal_offset`` on the env (before any ``sample_task``); returns the offset the
    tasks use (None: the env has none). A set offset on an env without one names the key."""
    base = env.unwrapped
    if pcfg.goal_offset is not None:
        if not hasattr(base, "goal_offset"):
            raise ConfigError(
                f"plan.goal_offset={pcfg.goal_offset}: env {pcfg.env!r} has no goal_offset "
                "(its sample_task does not build goals a number of steps ahead)"
            )
        base.goal_offset = int(pcfg.goal_offset)
    offset = getattr(base, "goal_offset", None)
    return int(offset) if offset is not None else None
