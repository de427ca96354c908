"""`vjepa collect ENV`: trajectories of an env as trajectory shards.

Each episode starts from the env's own random reset (seeded). When the env has a
data-collection policy, ``env.unwrapped.collect_action(memory, rng) -> action`` (vjepa/PushT-v0:
a scripted pushing policy with noise, since random actions rarely move the T), every action
comes from it (``memory``: a dict it keeps for the episode; ``rng``: the episode's seeded
generator). Otherwise the actions are random with persistence, as PLDM does
(:func:`vjepa.world.policy.random_actions`).

A trajectory shard sample (the format: vjepa.world.trajectories):

- ``<key>.mp4``: the T frames [T, H, W, 3], lossless (H.264 RGB at qp 0: decodes bit-exact);
- ``<key>.actions.npy``: float32 [T-1, A]; action t moves frame t to frame t+1;
- ``<key>.states.npy``: float32 [T, S], when the env has ``get_state``;
- ``<key>.violations.npy``: bool [T], when the env's steps report ``info["violation"]``: frame
  t is in a forbidden state (frame 0: the env's ``violation_states`` of the start, else False);
- ``<key>.json``: env, seed, episode, fps, num_frames, width, height, action_low,
  action_high, state_dim (plus the source / label fields of video shards, so the same shards
  feed ``vjepa pretrain``).

The same (env, episodes, steps, seed) give byte-identical shards;
vjepa.world.trajectories.load_trajectories reads them back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vjepa.data.stages import seed_for
from vjepa.data.writer import write_sample_shards
from vjepa.errors import UsageError
from vjepa.train.faults import hold_run_folder
from vjepa.world.envs import action_bounds, make_env, render_frame
from vjepa.world.policy import REPEAT_PROB, random_actions
from vjepa.world.trajectories import TRAJECTORY_FORMAT, encode_lossless, npy_bytes

_EPISODE, _ACTIONS = 21, 22


def _start_violation(base) -> bool:
    """Whether the start state is forbidden (the env's batched ``violation_states``, if any)."""
    if not hasattr(base, "violation_states"):
        return False
    return bool(base.violation_states(np.asarray(base.get_state())[None])[0])


def rollout_episode(
    env, spec: str, episode: int, frames_per_episode: int, seed: int, repeat_prob: float
) -> tuple[str, bytes, dict, dict[str, bytes]]:
    """One random-action episode as a shard sample (key, mp4, json meta, extra members)."""
    low, high = action_bounds(env)
    base = env.unwrapped
    env.reset(seed=seed_for(seed, _EPISODE, episode) % (1 << 31))
    rng = np.random.default_rng(seed_for(seed, _ACTIONS, episode))
    policy = getattr(base, "collect_action", None)  # the env's own data-collection policy
    if policy is None:
        actions = random_actions(rng, frames_per_episode - 1, low, high, repeat_prob)  # [T-1, A]
    else:
        actions = np.zeros((frames_per_episode - 1, low.shape[0]), dtype=np.float32)  # [T-1, A]
    memory: dict = {}
    has_state = hasattr(base, "get_state")
    frames = [render_frame(env)]
    states = [np.asarray(base.get_state(), dtype=np.float32).reshape(-1)] if has_state else []
    flags: list[bool] = [_start_violation(base) if has_state else False]
    reports = False
    for t, a in enumerate(actions):
        if policy is not None:
            a = actions[t] = np.clip(np.asarray(policy(memory, rng), np.float32), low, high)
        info = env.step(a)[-1]
        frames.append(render_frame(env))
        reports = reports or "violation" in info
        flags.append(bool(info.get("violation", False)))
        if has_state:
            states.append(np.asarray(base.get_state(), dtype=np.float32).reshape(-1))
    video = np.stack(frames)  # [T, H, W, 3]
    fps = float(env.metadata.get("render_fps") or 10)
    meta = {
        "source": f"{spec}#episode={episode}",
        "label": None,
        "label_name": None,
        "env": spec,
        "seed": seed,
        "episode": episode,
        "fps": fps,
        "num_frames": int(video.shape[0]),
        "width": int(video.shape[2]),
        "height": int(video.shape[1]),
        "duration": video.shape[0] / fps,
        "action_low": low.tolist(),
        "action_high": high.tolist(),
        "state_dim": int(states[0].shape[0]) if has_state else None,
        "repeat_prob": repeat_prob,
        "policy": "random" if policy is None else "env.collect_action",
    }
    extra = {"actions.npy": npy_bytes(actions)}
    if has_state:
        extra["states.npy"] = npy_bytes(np.stack(states))  # [T, S]
    if reports:
        extra["violations.npy"] = npy_bytes(np.array(flags, dtype=bool))  # [T]
    return f"{episode:06d}", encode_lossless(video, fps), meta, extra


def collect(
    spec: str,
    out: str | Path,
    *,
    episodes: int,
    steps: int,
    seed: int = 0,
    repeat_prob: float = REPEAT_PROB,
    max_count: int = 100,
    progress: bool = True,
) -> dict:
    """Write ``episodes`` random-action episodes of ``steps`` frames each; returns the manifest."""
    if episodes < 1 or steps < 2:
        raise UsageError(f"collect needs episodes >= 1 and steps >= 2, got {episodes}, {steps}")
    if not 0 <= repeat_prob < 1:
        raise UsageError(f"repeat_prob must be within [0, 1), got {repeat_prob}")
    env = make_env(spec)

    def samples() -> Iterator[tuple[str, bytes, dict, dict[str, bytes]]]:
        for i in tqdm(range(episodes), unit="episode", desc="collect", disable=not progress):
            yield rollout_episode(env, spec, i, steps, seed, repeat_prob)

    info = {"env": spec, "episodes": episodes, "steps": steps, "seed": seed}
    info |= {"repeat_prob": repeat_prob, "trajectory_format": TRAJECTORY_FORMAT}
    with hold_run_folder(out):  # one collect per folder
        manifest = write_sample_shards(
            samples(), out, num_inputs=episodes, max_count=max_count, extra_manifest=info
        )
    env.close()
    return manifest
