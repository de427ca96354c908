"""Environments for world models and planning: naming, construction and the task protocol.

An env is named by a string in one of three forms, wherever one is asked for:

- a registered gymnasium id, e.g. ``vjepa/TwoRooms-v0`` (ours, registered by
  :func:`register_envs`), ``swm/TwoRoom-v1`` (stable-worldmodel, when it is installed);
- ``path/to/file.py:ClassName``: a class in a Python file;
- ``package.module:ClassName``: a class in an importable module.

The env must be a ``gymnasium.Env`` with ``render_mode="rgb_array"`` renders ``[H, W, 3]``
uint8 and a ``Box`` action space. Planning also needs the **task protocol** on
``env.unwrapped``:

- ``sample_task(seed) -> (start_state, goal_state)``: the goal is reachable from the start;
- ``reset(seed=..., options={"state": s})``: start in state ``s``;
- ``goal_distance(goal_state) -> float``: distance from the current state to the goal;
- ``success_distance: float``;
- ``get_state() -> np.ndarray``: the current state (collect stores it; the oracle sets it).

Optional, for speed and plots: ``step_states(states [N, S], actions [N, A]) -> [N, S]`` and
``state_distance(states [N, S], goal [S]) -> [N]`` (batched true dynamics for the oracle),
``state_xy(states [N, S]) -> [N, 2]`` (pixel coordinates of the agent in a render),
``max_episode_steps`` (the episode budget), ``info["violation"]`` at every step with a batched
``violation_states(states [N, S]) -> [N] bool`` (guardrails).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

from vjepa.errors import UsageError

TWO_ROOMS_ID = "vjepa/TwoRooms-v0"
REACHER_ID = "vjepa/Reacher-v0"
PROTOCOL = ("sample_task", "goal_distance", "success_distance", "get_state")


class EnvSpecError(UsageError):
    """An env name that cannot be resolved, or an env that lacks what it is used for."""


SHIPPED_ENVS: dict[str, tuple[str, dict]] = {
    TWO_ROOMS_ID: ("vjepa.world.two_rooms:TwoRoomsEnv", {}),
    "vjepa/TwoRoomsAny-v0": ("vjepa.world.two_rooms:TwoRoomsEnv", {"split": "any"}),
    REACHER_ID: ("vjepa.world.reacher:ReacherEnv", {}),
    # the scene varies per task (issue #25): wall and door, plus a large moving distractor
    "vjepa/VariedRooms-v0": ("vjepa.world.varied_rooms:VariedRoomsEnv", {}),
    "vjepa/VariedRoomsPlain-v0": (
        "vjepa.world.varied_rooms:VariedRoomsEnv",
        {"distractor": False},
    ),
    # guardrails and a non-deterministic world (issue #21)
    "vjepa/LavaRoom-v0": ("vjepa.world.patch_room:PatchRoomEnv", {}),
    "vjepa/IceRoom-v0": ("vjepa.world.patch_room:PatchRoomEnv", {"lava": False, "ice": True}),
    "vjepa/IceLavaRoom-v0": ("vjepa.world.patch_room:PatchRoomEnv", {"ice": True}),
    # long horizons (issue #22)
    "vjepa/Maze-v0": ("vjepa.world.maze:MazeEnv", {}),
    # the field's benchmarks under stable-worldmodel's protocol (optional extra: benchmarks)
    "vjepa/PushT-v0": ("vjepa.world.pusht:PushTEnv", {}),
    "vjepa/DMCReacher-v0": ("vjepa.world.dmc_reacher:DMCReacherEnv", {}),
}
"""The shipped envs: gymnasium id -> (entry point, constructor keyword arguments)."""


def register_envs() -> None:
    """Register the shipped envs with gymnasium (idempotent; called by :func:`make_env`)."""
    for env_id, (entry, kwargs) in SHIPPED_ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry, kwargs=kwargs)


def _load_class(spec: str) -> type | None:
    """The class named by ``file.py:Class`` or ``module:Class``; None if not of that form."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name.isidentifier():
        return None
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise EnvSpecError(f"env {spec!r}: file {target} not found")
        mod_name = "vjepa_env_" + re.sub(r"\W", "_", str(path.resolve()))
        module = sys.modules.get(mod_name)
        if module is None:
            mspec = importlib.util.spec_from_file_location(mod_name, path)
            if mspec is None or mspec.loader is None:
                raise EnvSpecError(f"env {spec!r}: cannot load {target} as Python")
            module = importlib.util.module_from_spec(mspec)
            sys.modules[mod_name] = module  # dataclasses / pickling look the module up by name
            try:
                mspec.loader.exec_module(module)
            except Exception as err:
                del sys.modules[mod_name]
                raise EnvSpecError(f"env {spec!r}: importing {target} failed: {err}") from err
    else:
        if not all(p.isidentifier() for p in target.split(".")):
            return None  # e.g. a gymnasium id with a namespace, "swm/TwoRoom-v1"
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise EnvSpecError(f"env {spec!r}: cannot import module {target}: {err}") from err
    cls = getattr(module, name, None)
    if cls is None:
        raise EnvSpecError(f"env {spec!r}: {target} has no attribute {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, gym.Env)):
        raise EnvSpecError(f"env {spec!r}: {name} is not a gymnasium.Env subclass")
    return cls


def make_env(spec: str, *, render_mode: str = "rgb_array") -> gym.Env:
    """Build the env named by ``spec`` (gymnasium id | ``file.py:Class`` | ``module:Class``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise EnvSpecError(f"env spec must be a non-empty string, got {spec!r}")
    register_envs()
    cls = _load_class(spec)
    if cls is not None:
        try:
            env = cls(render_mode=render_mode)
        except TypeError as err:
            raise EnvSpecError(f"env {spec!r}: cannot construct {cls.__name__}: {err}") from err
    else:
        if spec.startswith("swm/"):
            _import_stable_worldmodel(spec)
        try:
            env = gym.make(spec, render_mode=render_mode)
        except gym.error.Error as err:
            raise EnvSpecError(
                f"env {spec!r} is neither a registered gymnasium id nor path/file.py:Class "
                f"nor package.module:Class ({err})"
            ) from err
    check_env(env, spec)
    return env


def _import_stable_worldmodel(spec: str) -> None:
    """stable-worldmodel registers the swm/* ids on import; it is optional."""
    try:
        importlib.import_module("stable_worldmodel")
    except ImportError as err:
        raise EnvSpecError(
            f"env {spec!r} needs stable-worldmodel (pip install stable-worldmodel): {err}"
        ) from err


def check_env(env: gym.Env, spec: str = "env") -> None:
    """What every env must have: a Box action space and rgb_array renders."""
    if not isinstance(env.action_space, gym.spaces.Box):
        raise EnvSpecError(
            f"{spec}: the action space must be a gymnasium Box, got {type(env.action_space).__name__}"
        )
    if env.render_mode != "rgb_array":
        raise EnvSpecError(f"{spec}: render_mode must be 'rgb_array', got {env.render_mode!r}")


def check_protocol(env: gym.Env, spec: str = "env") -> None:
    """The task protocol on ``env.unwrapped`` (planning needs it); names what is missing."""
    base = env.unwrapped
    missing = [name for name in PROTOCOL if not hasattr(base, name)]
    if missing:
        raise EnvSpecError(
            f"{spec}: {type(base).__name__} lacks the task protocol: {', '.join(missing)} "
            "(see vjepa/world/envs.py)"
        )


def render_frame(env: gym.Env) -> np.ndarray:
    """The current frame, checked: uint8 [H, W, 3]."""
    frame = env.render()
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise EnvSpecError(
            f"render() must return uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}"
        )
    return frame


def reset_to(env: gym.Env, state: np.ndarray, seed: int | None = None) -> np.ndarray:
    """Reset ``env`` into ``state``; returns the frame there."""
    env.reset(seed=seed, options={"state": np.asarray(state)})
    return render_frame(env)


def action_bounds(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 [A] of the Box action space; infinite bounds are an error."""
    space = env.action_space
    low = np.asarray(space.low, dtype=np.float32).reshape(-1)
    high = np.asarray(space.high, dtype=np.float32).reshape(-1)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise EnvSpecError("the action space must have finite bounds (random actions, planning)")
    return low, high
