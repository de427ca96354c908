"""The temporal-distance head (TEMPO-style, issue #22): steps-to-goal between two latents.

A small MLP on a pair of a world model's latent maps (a frame and a goal frame) regresses how
many env steps apart they are, ``log1p(min(k, cap))``. It is fitted by ``vjepa world train``
(``world.tempo``) after the world model, on the final model's latents of the training
trajectories:

- **near pairs**: frames t and t + k of one trajectory, k drawn uniformly in [0, min(cap,
  T - 1)] (then t uniformly where it fits), target ``log1p(k)``;
- **far pairs** (a ``world.tempo_far`` share of each batch): frames of two different
  trajectories, target ``log1p(cap)`` (different trajectories may pass close to each other:
  this is a noisy "far", which is why the share is small).

The planner uses it through ``plan.goal_cost`` (vjepa.world.planning.costs.goal_energies):
the predicted steps of each imagined latent to the goal latent, divided by the cap, replace
(``tempo``) or join (``blend``, weight ``plan.tempo_weight``) the latent energy at every step.

Stored as ``tempo.safetensors`` (weights; its architecture and the checkpoint step it was
fitted on in the file's metadata): in a world train run folder beside ``world.json`` (loaded
with that checkpoint only), in a world export folder beside its weights.
:func:`vjepa.world.io.load_world_model` attaches it as ``model.tempo``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from scipy.stats import spearmanr
from torch import Tensor, nn

TEMPO_FILE = "tempo.safetensors"


class TempoHead(nn.Module):
    """(latent maps [..., N, D], goal maps [..., N, D]) -> predicted log1p(env steps) [...].

    The maps are flattened (a mean over the tokens of a RoPE ViT forgets where the agent is)
    and standardised with the training frames' statistics; the MLP sees (a, b, a - b).
    """

    def __init__(self, dim: int, hidden: int = 128, cap: int = 64) -> None:
        super().__init__()
        self.dim, self.hidden, self.cap = dim, hidden, cap
        self.register_buffer("mu", torch.zeros(dim))
        self.register_buffer("sd", torch.ones(dim))
        self.mlp = nn.Sequential(
            nn.Linear(3 * dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 1),
        )

    def arch(self) -> dict[str, int]:
        return {"dim": self.dim, "hidden": self.hidden, "cap": self.cap}

    def _features(self, a: Tensor, b: Tensor) -> Tensor:
        a = (a.flatten(-2) - self.mu) / self.sd  # [..., N*D]
        b = (b.flatten(-2) - self.mu) / self.sd
        a, b = torch.broadcast_tensors(a, b)
        return torch.cat([a, b, a - b], -1)  # [..., 3 N*D]

    def forward(self, z: Tensor, goal: Tensor) -> Tensor:
        """Predicted log1p(steps) from ``z`` to ``goal`` [...] (shapes broadcast)."""
        return self.mlp(self._features(z, goal))[..., 0]

    def steps(self, z: Tensor, goal: Tensor) -> Tensor:
        """Predicted env steps from ``z`` to ``goal``, within [0, cap], [...]."""
        return torch.expm1(self(z, goal)).clamp(0.0, float(self.cap))


def _pairs(
    lengths: list[int], n: int, cap: int, far: float, gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(traj a, frame a, traj b, frame b, steps) [n] each: near pairs of one trajectory (k
    uniform in [0, min(cap, T - 1)]) and a ``far`` share of cross-trajectory pairs (steps = cap)."""
    lens = np.asarray(lengths)
    ta = gen.integers(len(lens), size=n)
    k = np.floor(gen.random(n) * (np.minimum(cap, lens[ta] - 1) + 1)).astype(int)
    fa = np.floor(gen.random(n) * (lens[ta] - k)).astype(int)
    tb, fb = ta.copy(), fa + k
    if len(lens) > 1:
        is_far = gen.random(n) < far
        shift = gen.integers(1, len(lens), size=n)  # another trajectory, never the same
        tb = np.where(is_far, (ta + shift) % len(lens), tb)
        fb = np.where(is_far, np.floor(gen.random(n) * lens[tb]).astype(int), fb)
        fa = np.where(is_far, np.floor(gen.random(n) * lens[ta]).astype(int), fa)
        k = np.where(is_far, cap, k)
    return ta, fa, tb, fb, k


def fit_tempo(
    latents: list[Tensor],
    *,
    cap: int,
    steps: int,
    lr: float,
    seed: int,
    hidden: int = 128,
    batch: int = 512,
    far: float = 0.2,
) -> TempoHead:
    """A :class:`TempoHead` fitted on pairs of the trajectories' latents [T, N, D] (see the
    module doc): ``steps`` Adam steps of ``batch`` pairs, MSE on log1p(steps)."""
    if not latents or cap < 1:
        raise ValueError(f"fit_tempo needs trajectories and cap >= 1, got {len(latents)}, {cap}")
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)
    frames = torch.cat(latents)  # [M, N, D]: every frame, trajectory after trajectory
    lengths = [len(z) for z in latents]
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # [T] row of each trajectory's frame 0
    head = TempoHead(frames[0].numel(), hidden, cap)
    frames = frames.flatten(1)  # [M, N*D]
    head.mu.copy_(frames.mean(0))
    head.sd.copy_(frames.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    threads = torch.get_num_threads()
    # A small MLP: one thread is as fast alone and far faster on a shared machine (measured
    # 1.6 vs 120 ms a step at batch 512 on 2 busy cores).
    torch.set_num_threads(1)
    try:
        for i in range(steps):
            ta, fa, tb, fb, k = _pairs(lengths, batch, cap, far, gen)
            target = torch.log1p(torch.from_numpy(k).float())
            for group in opt.param_groups:  # cosine decay to 5 % of lr
                group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / steps)))
            opt.zero_grad()
            a, b = frames[first[ta] + fa], frames[first[tb] + fb]  # [batch, N*D]
            pred = head(a[:, None], b[:, None])  # one "token" of N*D: the head flattens
            torch.nn.functional.mse_loss(pred, target).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return head.eval()


@torch.no_grad()
def tempo_metrics(head: TempoHead, latents: list[Tensor]) -> dict[str, float | int]:
    """Held-out quality on every ordered pair (t, t + k), 0 <= k <= cap, of each trajectory:
    Spearman's rank correlation of predicted vs true steps, mean absolute error in steps, and
    the mean prediction on cross-trajectory pairs (should be near the cap)."""
    pred, true = [], []
    for z in latents:
        t = len(z)
        i, j = np.triu_indices(t)
        keep = (j - i) <= head.cap
        i, j = i[keep], j[keep]
        pred.append(head.steps(z[i], z[j]).numpy())
        true.append(j - i)
    p, y = np.concatenate(pred), np.concatenate(true)
    out: dict[str, float | int] = {
        "tempo_spearman": float(spearmanr(p, y).statistic),
        "tempo_mae_steps": float(np.abs(p - y).mean()),
        "tempo_pairs": int(len(y)),
        "tempo_cap": int(head.cap),
    }
    if len(latents) > 1:
        a = torch.cat([z[::4] for z in latents[:1]])
        b = torch.cat([z[::4] for z in latents[1:]])
        out["tempo_cross_trajectory_steps"] = float(head.steps(a[:, None], b[None]).mean())
    return out


def save_tempo(head: TempoHead, path: str | Path, step: int | None = None) -> Path:
    """Write ``head`` to ``path`` (a ``tempo.safetensors`` file) with its architecture and the
    checkpoint step it was fitted on in the metadata."""
    meta = {"arch": json.dumps(head.arch())}
    if step is not None:
        meta["step"] = str(step)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    return Path(path)


def tempo_step(path: str | Path) -> int | None:
    """The checkpoint step a saved head was fitted on (None: not recorded, an export's)."""
    with safe_open(str(path), framework="pt") as f:
        step = (f.metadata() or {}).get("step")
    return int(step) if step is not None else None


def load_tempo(path: str | Path) -> TempoHead:
    """The :class:`TempoHead` of a ``tempo.safetensors`` file (strict load)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "arch" not in meta:
        raise ValueError(f"{path}: no 'arch' in the metadata (not a tempo head file)")
    head = TempoHead(**json.loads(meta["arch"]))
    head.load_state_dict(load_file(str(path)))
    return head.eval()
