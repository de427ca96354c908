"""Does the world model's latent say where the agent is? A linear (ridge) probe (issue #25).

A latent that follows a large scene element (a distractor that moves from episode to episode)
rather than the small agent plans nowhere. The diagnostic: ridge regressions from a frame's
latent (flattened) to positions known from the env's states, fitted on frames of training
trajectories and scored by R² on the held-out (val) trajectories. The targets come from the
env's optional ``probe_targets(states [N, S]) -> {name: [N, 2]}`` (docs/world.md); without it,
``agent`` = ``states[:, :2]`` (the position of the shipped planar envs). vjepa/VariedRooms-v0
adds ``distractor``, the distractor disc's centre: a latent that tracks the distractor better
than the agent is the failure of issue #25.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vjepa.train.metrics import ridge_chosen, ridge_predict

LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""Ridge penalties tried (relative to the number of rows), chosen on the last fifth of the
training rows, never on val."""


def probe_targets(env: Any, states: np.ndarray) -> dict[str, np.ndarray]:
    """{name: positions [N, 2]} of ``states`` [N, S]: the env's ``probe_targets`` when it has
    one, else ``{"agent": states[:, :2]}``."""
    states = np.asarray(states, dtype=np.float64)
    fn = getattr(getattr(env, "unwrapped", env), "probe_targets", None)
    if fn is None:
        return {"agent": states[:, :2]}
    out = {k: np.asarray(v, dtype=np.float64) for k, v in fn(states).items()}
    bad = {k: v.shape for k, v in out.items() if v.shape != (len(states), 2)}
    if bad:
        raise ValueError(f"probe_targets must return [N, 2] arrays for N={len(states)}, got {bad}")
    return out


def r2_score(pred: Tensor, true: Tensor) -> float:
    """R² averaged over the columns of ``true`` [M, O] (1: perfect, 0: the val mean, < 0: worse)."""
    pred, true = pred.double(), true.double()
    ss_res = ((pred - true) ** 2).sum(dim=0)
    ss_tot = ((true - true.mean(dim=0)) ** 2).sum(dim=0).clamp_min(1e-12)
    return float((1 - ss_res / ss_tot).mean())


def ridge_r2(train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor) -> float:
    """R² on val of a ridge regression ``y ~ x`` fitted on train (penalty chosen on the last
    fifth of the train rows among :data:`LAMBDAS`, then refit on all of them)."""
    model, _ = ridge_chosen(train_x, train_y, LAMBDAS, lambda p, t: -r2_score(p, t))
    return r2_score(ridge_predict(model, val_x), val_y)


def position_probe(
    train_z: list[Tensor],
    train_targets: list[dict[str, np.ndarray]],
    val_z: list[Tensor],
    val_targets: list[dict[str, np.ndarray]],
) -> dict[str, float]:
    """``{"probe_r2_<name>": R²}`` per target name: latents [T, N, D] and targets {name: [T, 2]}
    per trajectory (train: fit, val: score)."""

    def stack(zs: list[Tensor], ts: list[dict[str, np.ndarray]], name: str):
        x = torch.cat([z.flatten(1) for z in zs])  # [M, N*D]
        y = torch.from_numpy(np.concatenate([t[name] for t in ts]))  # [M, 2]
        return x, y

    out = {}
    for name in train_targets[0]:
        tx, ty = stack(train_z, train_targets, name)
        vx, vy = stack(val_z, val_targets, name)
        out[f"probe_r2_{name}"] = ridge_r2(tx, ty, vx, vy)
    return out
