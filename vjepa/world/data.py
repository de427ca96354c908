"""Trajectory shards -> in-memory trajectories -> seeded training windows.

A trajectory sample (written by ``vjepa collect``, see /work WORLD contract and docs/world.md)::

    <key>.mp4          frames [T, H, W, 3]
    <key>.actions.npy  float32 [T-1, A]: action t moves frame t to frame t+1
    <key>.states.npy   float32 [T, S] (optional)
    <key>.json         {"env", "seed", "episode", "fps", "num_frames", "action_low", "action_high", ...}

Trajectory data sets are small (64x64 renders), and the world model's encoder is frozen, so
:func:`read_trajectories` decodes every video once and the trainer encodes every frame once;
training then samples windows from memory. A window of batch b is a pure function of
(seed, rank, b) (:class:`WindowSampler`), so a resumed run draws exactly the batches the
uninterrupted one would have.

Bad samples go through the one data-error handler (vjepa.data.errors.DataErrors): counted by
reason (``missing_actions``, ``bad_actions``, ``action_dim_mismatch``, ``missing_states``,
``bad_states``, plus the video reasons), the first of each logged with its key, and skipped;
the rest loads.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from vjepa.data.errors import DataError, DataErrors
from vjepa.data.stages import seed_for
from vjepa.world.collect import Trajectory, iter_trajectories

_WINDOWS = 11  # seed domain tag of the window sampler


def read_trajectories(
    shards: str,
    *,
    decoder: str = "decord",
    need_states: bool = False,
    limit: int = 0,
    errors: DataErrors | None = None,
) -> list[Trajectory]:
    """Every good trajectory of ``shards`` (in shard order), at most ``limit`` (0: all).

    All trajectories must share the action (and state) dimension of the first good one; the
    others are skipped as ``action_dim_mismatch``. No good trajectory at all is a DataError
    that lists the skip reasons.
    """
    errors = errors if errors is not None else DataErrors(where="[world data] ")
    out: list[Trajectory] = []
    for traj in iter_trajectories(shards, errors, decoder):  # the one trajectory-shard reader
        if not need_states:
            traj = replace(traj, states=None)
        elif traj.states is None:
            errors.count(
                "missing_states", traj.key, f"no {traj.key}.states.npy (world.use_state=true)"
            )
            continue
        if out and traj.actions.shape[1] != out[0].actions.shape[1]:
            errors.count(
                "action_dim_mismatch",
                traj.key,
                f"{traj.actions.shape[1]}-d actions, but {out[0].key} has "
                f"{out[0].actions.shape[1]}-d",
            )
            continue
        if out and traj.states is not None and traj.states.shape[1] != out[0].states.shape[1]:
            errors.count("state_dim_mismatch", traj.key, f"{traj.states.shape[1]}-d states")
            continue
        out.append(traj)
        if limit and len(out) >= limit:
            break
    if not out:
        raise DataError(f"no usable trajectory in {shards} (skipped: {errors.as_dict()})")
    return out


def action_bounds(trajs: list[Trajectory]) -> tuple[list[float], list[float]]:
    """(low, high) per action dim: the env's bounds from the json, else the data's range."""
    meta = trajs[0].meta
    A = trajs[0].actions.shape[1]
    low, high = meta.get("action_low"), meta.get("action_high")
    if isinstance(low, list) and isinstance(high, list) and len(low) == len(high) == A:
        return [float(v) for v in low], [float(v) for v in high]
    every = np.concatenate([t.actions for t in trajs])  # [sum T-1, A]
    return every.min(0).astype(float).tolist(), every.max(0).astype(float).tolist()


class WindowSampler:
    """Seeded windows (trajectory, first frame) of ``span`` frames, uniform over all windows.

    Batch b of rank ``rank`` is a pure function of (seed, rank, b): resume-exact by design.
    """

    def __init__(self, lengths: list[int], span: int, *, seed: int, rank: int = 0):
        self.span, self.seed, self.rank = span, seed, rank
        counts = np.array([max(n - span + 1, 0) for n in lengths], dtype=np.int64)
        if counts.sum() == 0:
            raise DataError(
                f"no trajectory has the {span} frames a window needs "
                f"(longest: {max(lengths)}); lower world.window or world.frameskip"
            )
        self.offsets = np.concatenate([[0], np.cumsum(counts)])  # [E+1]
        self.total = int(self.offsets[-1])

    def sample(self, batch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(trajectory index [size], first frame [size]) of batch ``batch``."""
        gen = torch.Generator().manual_seed(seed_for(self.seed, _WINDOWS, self.rank, batch))
        flat = torch.randint(self.total, (size,), generator=gen).numpy()  # [size]
        traj = np.searchsorted(self.offsets, flat, side="right") - 1
        return traj, flat - self.offsets[traj]


def gather_windows(
    latents: list[torch.Tensor],
    trajs: list[Trajectory],
    traj_idx: np.ndarray,
    first: np.ndarray,
    *,
    window: int,
    frameskip: int,
) -> dict[str, torch.Tensor | None]:
    """Stack windows: ``z`` [B, W, N, D], ``actions`` [B, W-1, r*A], ``states`` [B, W, S] | None.

    Frames t0, t0+r, .., t0+(W-1)r; the model action between two of them is the r env actions
    in between, concatenated.
    """
    r, span = frameskip, (window - 1) * frameskip + 1
    zs, acts, sts = [], [], []
    for i, t0 in zip(traj_idx.tolist(), first.tolist()):
        zs.append(latents[i][t0 : t0 + span : r])  # [W, N, D]
        a = trajs[i].actions[t0 : t0 + span - 1]  # [(W-1)*r, A]
        acts.append(torch.from_numpy(a.reshape(window - 1, -1)))  # [W-1, r*A]
        if trajs[i].states is not None:
            sts.append(torch.from_numpy(trajs[i].states[t0 : t0 + span : r]))  # [W, S]
    return {
        "z": torch.stack(zs),
        "actions": torch.stack(acts),
        "states": torch.stack(sts) if len(sts) == len(zs) else None,
    }
