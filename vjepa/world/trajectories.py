"""Trajectory shards: the sample format, written by ``vjepa collect`` / the DROID converter and
read back for world-model training.

A trajectory sample (the contract in docs/world.md, written by the shard writer)::

    <key>.mp4          frames [T, H, W, 3] (lossless from envs: H.264 RGB at qp 0, decodes bit-exact)
    <key>.actions.npy  float32 [T-1, A]: action t moves frame t to frame t+1
    <key>.states.npy   float32 [T, S] (optional)
    <key>.violations.npy  bool [T] (optional): frame t is in a forbidden state; absent = unknown
    <key>.json         {"env", "seed", "episode", "fps", "num_frames", "action_low", "action_high", ...}

Reading: :func:`iter_trajectories` / :func:`load_trajectories` parse every sample; a sample with
missing or malformed actions / states is counted by reason through the one data-error handler
(vjepa.data.errors.DataErrors: ``missing_actions``, ``bad_actions``, ``action_dim_mismatch``,
``missing_states``, ``bad_states``, plus the video reasons), the first of each logged with its
key, and skipped; the rest loads. The video decoder is the caller's (``data.decoder``).

Training: trajectory data sets are small (64x64 renders), so :func:`read_trajectories` decodes
every video once and the trainer encodes every frame once (with a frozen encoder); training
then samples windows from memory. A window of batch b is a pure function of (seed, rank, b)
(:class:`WindowSampler`), so a resumed run draws exactly the batches the uninterrupted one
would have.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from vjepa.config import RetryConfig
from vjepa.data.decode import DecodeError, open_video
from vjepa.data.encode import encode_frames
from vjepa.data.errors import DataError, DataErrors
from vjepa.data.remote import shard_samples
from vjepa.data.shards import expand_urls
from vjepa.data.stages import seed_for
from vjepa.errors import UsageError

TRAJECTORY_FORMAT = "vjepa-trajectories/1"
_WINDOWS = 11  # seed domain tag of the window sampler


class TrajectoryError(UsageError):
    """A trajectory sample that cannot be used; ``reason`` is the error-count key."""

    def __init__(self, reason: str, msg: str) -> None:
        super().__init__(f"{reason}: {msg}")
        self.reason = reason


@dataclass
class Trajectory:
    """One episode: frames uint8 [T, H, W, 3], actions float32 [T-1, A], states [T, S] or None,
    violations bool [T] or None (unknown: the env reported none)."""

    key: str
    frames: np.ndarray
    actions: np.ndarray
    states: np.ndarray | None
    meta: dict
    violations: np.ndarray | None = None


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def encode_lossless(frames: np.ndarray, fps: float) -> bytes:
    """Frames [T, H, W, 3] as an mp4 that decodes bit-exact (H.264 RGB, qp 0, one thread)."""
    return encode_frames(
        frames,
        fps=fps,
        codec="libx264rgb",
        pix_fmt="rgb24",
        options={"qp": "0", "preset": "veryfast", "threads": "1"},
        container_options={"fflags": "+bitexact"},
    )


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------


def _npy(sample: dict, name: str, key: str) -> np.ndarray | None:
    if name not in sample:
        return None
    try:
        return np.load(io.BytesIO(sample[name]), allow_pickle=False)
    except (ValueError, OSError) as err:
        raise TrajectoryError(f"bad_{name.split('.')[0]}", f"{key}: {err}") from None


def parse_trajectory(sample: dict, decoder: str) -> Trajectory:
    """A tar sample -> Trajectory; raises TrajectoryError naming what is missing or wrong."""
    key = str(sample.get("__key__", "?"))
    for member in ("json", "mp4"):
        if member not in sample:
            raise TrajectoryError(f"missing_{member}", f"{key} has no {member}")
    meta = json.loads(sample["json"])
    actions = _npy(sample, "actions.npy", key)
    if actions is None:
        raise TrajectoryError("missing_actions", f"{key} has no actions.npy")
    states = _npy(sample, "states.npy", key)
    try:
        with open_video(sample["mp4"], decoder) as reader:
            frames = reader.get_frames(list(range(reader.num_frames)))  # [T, H, W, 3]
    except DecodeError as err:
        raise TrajectoryError(err.reason, f"{key}: {err}") from None
    t = frames.shape[0]
    adim = len(meta.get("action_low") or [])
    if actions.ndim != 2 or actions.shape[0] != t - 1:
        raise TrajectoryError(
            "bad_actions",
            f"{key}: actions {list(actions.shape)} for {t} frames (want [{t - 1}, A])",
        )
    if adim and actions.shape[1] != adim:
        raise TrajectoryError(
            "action_dim_mismatch",
            f"{key}: actions are {actions.shape[1]}-D, the json's action bounds {adim}-D",
        )
    if states is not None and (states.ndim != 2 or states.shape[0] != t):
        raise TrajectoryError("bad_states", f"{key}: states {list(states.shape)} for {t} frames")
    states = None if states is None else states.astype(np.float32)
    flags = _npy(sample, "violations.npy", key)
    if flags is not None and (flags.ndim != 1 or flags.shape[0] != t):
        raise TrajectoryError(
            "bad_violations", f"{key}: violations {list(flags.shape)} for {t} frames"
        )
    flags = None if flags is None else flags.astype(bool)
    return Trajectory(key, frames, actions.astype(np.float32), states, meta, flags)


def iter_trajectories(
    shards: str,
    decoder: str,
    errors: DataErrors | None = None,
    retry: RetryConfig | None = None,
) -> Iterator[Trajectory]:
    """Every usable trajectory in ``shards`` (folder, glob, brace pattern or URLs), in shard
    order; remote shards are read with the retries of ``retry`` (``data.retry``)."""
    errors = errors if errors is not None else DataErrors("trajectories: ")
    for sample in shard_samples(expand_urls(shards), errors, retry):
        try:
            yield parse_trajectory(sample, decoder)
        except TrajectoryError as err:
            errors.count(err.reason, str(sample.get("__key__", "?")), err)


def load_trajectories(shards: str, decoder: str) -> tuple[list[Trajectory], DataErrors]:
    """All usable trajectories of ``shards`` and the error counts of the skipped ones."""
    errors = DataErrors("trajectories: ")
    return list(iter_trajectories(shards, decoder, errors)), errors


# ----------------------------------------------------------------------------------------
# Training windows
# ----------------------------------------------------------------------------------------


def read_trajectories(
    shards: str,
    *,
    decoder: str,
    need_states: bool = False,
    keep_states: bool = False,
    limit: int = 0,
    errors: DataErrors | None = None,
    retry: RetryConfig | None = None,
) -> list[Trajectory]:
    """Every good trajectory of ``shards`` (in shard order), at most ``limit`` (0: all).

    States are dropped unless ``need_states`` (then a trajectory without them is skipped) or
    ``keep_states`` (kept where present, never checked: for evaluation only).

    All trajectories must share the action (and state) dimension of the first good one; the
    others are skipped as ``action_dim_mismatch``. No good trajectory at all is a DataError
    that lists the skip reasons.
    """
    errors = errors if errors is not None else DataErrors(where="[world data] ")
    out: list[Trajectory] = []
    for traj in iter_trajectories(shards, decoder, errors, retry):  # the one trajectory reader
        if not (need_states or keep_states):
            traj = replace(traj, states=None)
        elif need_states and traj.states is None:
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
        if need_states and out and traj.states.shape[1] != out[0].states.shape[1]:
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
    series: list[torch.Tensor],
    trajs: list[Trajectory],
    traj_idx: np.ndarray,
    first: np.ndarray,
    *,
    window: int,
    frameskip: int,
    key: str = "latents",
) -> dict[str, torch.Tensor | None]:
    """Stack windows of a per-frame series: ``key`` [B, W, ...], ``actions`` [B, W-1, r*A],
    ``states`` [B, W, S] | None.

    ``series`` holds one tensor per trajectory, indexed by frame: latents [T, N, D] (``key``
    ``latents``) or uint8 frames [T, H, W, 3] (``frames``, end to end). Frames t0, t0+r, ..,
    t0+(W-1)r; the model action between two of them is the r env actions in between,
    concatenated.
    """
    r, span = frameskip, (window - 1) * frameskip + 1
    zs, acts, sts = [], [], []
    for i, t0 in zip(traj_idx.tolist(), first.tolist()):
        zs.append(series[i][t0 : t0 + span : r])  # [W, ...]
        a = trajs[i].actions[t0 : t0 + span - 1]  # [(W-1)*r, A]
        acts.append(torch.from_numpy(a.reshape(window - 1, -1)))  # [W-1, r*A]
        if trajs[i].states is not None:
            sts.append(torch.from_numpy(trajs[i].states[t0 : t0 + span : r]))  # [W, S]
    return {
        key: torch.stack(zs),
        "actions": torch.stack(acts),
        "states": torch.stack(sts) if len(sts) == len(zs) else None,
    }
