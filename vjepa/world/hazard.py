"""The learned guardrail: a small hazard head on a world model's latents (per frame: is the
agent in a forbidden state?), fitted from the per-step violation flags of trajectory shards.

- :class:`HazardHead`: latents [..., N, D] -> logits [...]: the mean and the max over the
  tokens (a hazard is local: the agent on one patch), then a two-layer MLP. It reads the same latent maps the predictor rolls out, so the planner scores
  every imagined step with it;
- :func:`fit_hazard`: full-batch AdamW on the frames of the training trajectories that carry
  flags, the rare positives weighted by ``pos_weight = negatives / positives``;
- :func:`hazard_metrics`: precision and recall at a threshold on held-out frames;
- ``hazard.pt`` in the run folder (:func:`save_hazard` / :func:`load_hazard`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

HAZARD_FILE = "hazard.pt"


class HazardHead(nn.Module):
    """Latent maps [..., N, D] -> hazard logits [...] (mean- and max-pooled tokens, MLP)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.dim, self.hidden = dim, hidden
        # standardisation of the pooled features with the training frames' statistics (a
        # LayerNorm would erase a shift shared by every channel)
        self.register_buffer("mu", torch.zeros(2 * dim))
        self.register_buffer("sd", torch.ones(2 * dim))
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    @staticmethod
    def pool(z: Tensor) -> Tensor:
        return torch.cat([z.mean(-2), z.amax(-2)], -1)  # [..., N, D] -> [..., 2D]

    def forward(self, z: Tensor) -> Tensor:
        return self.mlp((self.pool(z) - self.mu) / self.sd)[..., 0]  # [...]

    def prob(self, z: Tensor) -> Tensor:
        """Probability of a violation per latent map, [...]."""
        return torch.sigmoid(self(z))


def frames_with_flags(
    latents: list[Tensor], flags: list[np.ndarray | None]
) -> tuple[Tensor, Tensor]:
    """(latents [M, N, D], flags float [M]) of every frame of the trajectories that have flags."""
    zs = [z for z, f in zip(latents, flags) if f is not None]
    fs = [torch.from_numpy(f.astype(np.float32)) for f in flags if f is not None]
    if not zs:
        raise ValueError("no trajectory carries violation flags")
    return torch.cat(zs), torch.cat(fs)  # [M, N, D], [M]


def fit_hazard(
    latents: list[Tensor],
    flags: list[np.ndarray | None],
    *,
    steps: int,
    lr: float,
    seed: int,
    hidden: int = 64,
) -> HazardHead:
    """A :class:`HazardHead` fitted on the flagged frames (positives weighted neg / pos)."""
    z, y = frames_with_flags(latents, flags)  # [M, N, D], [M]
    pos = float(y.sum())
    pos_weight = torch.tensor((len(y) - pos) / max(pos, 1.0))
    torch.manual_seed(seed)
    head = HazardHead(z.shape[-1], hidden)
    pooled = HazardHead.pool(z)  # [M, 2D]
    head.mu.copy_(pooled.mean(0))
    head.sd.copy_(pooled.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(head(z), y)  # [M] vs [M]
        loss.backward()
        opt.step()
    return head.eval()


@torch.no_grad()
def hazard_metrics(
    head: HazardHead, latents: list[Tensor], flags: list[np.ndarray | None], threshold: float
) -> dict[str, float | None]:
    """Precision, recall and the counts of the head at ``threshold`` on the flagged frames."""
    z, y = frames_with_flags(latents, flags)
    pred = head.prob(z) > threshold  # [M]
    truth = y > 0.5
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    return {
        "hazard_precision": tp / (tp + fp) if tp + fp else None,
        "hazard_recall": tp / (tp + fn) if tp + fn else None,  # None: no positive
        "hazard_positives": tp + fn,
        "hazard_frames": int(len(y)),
    }


def save_hazard(head: HazardHead, run_dir: str | Path) -> Path:
    path = Path(run_dir) / HAZARD_FILE
    torch.save({"dim": head.dim, "hidden": head.hidden, "state": head.state_dict()}, path)
    return path


def load_hazard(run_dir: str | Path) -> HazardHead | None:
    """The hazard head of a world-model run folder, or None when it has none."""
    path = Path(run_dir) / HAZARD_FILE
    if not Path(run_dir).is_dir() or not path.exists():
        return None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    head = HazardHead(int(blob["dim"]), int(blob["hidden"]))
    head.load_state_dict(blob["state"])
    return head.eval()
