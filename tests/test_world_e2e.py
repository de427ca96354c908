"""End-to-end world-model training (LeWM style): the encoder trains with the predictor,
SIGReg keeps the latents spread, and the latent energy comes to grow with the distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from trajectories import render, write_trajectory_shard

from vjepa.config import load_config
from vjepa.world.io import load_world_model, random_init_like


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _grid() -> tuple[np.ndarray, torch.Tensor]:
    xs = np.linspace(0.05, 0.95, 9)
    pts = np.array([(x, y) for y in xs for x in xs], np.float32)  # [81, 2]
    frames = torch.from_numpy(np.stack([render(p, 32) for p in pts]))[:, None]  # [81,1,32,32,3]
    return pts, frames


def _landscape(model, frames: torch.Tensor, pts: np.ndarray) -> tuple[float, float]:
    """(mean Spearman(energy to a goal, distance) over 4 goals, latent std across positions)."""
    with torch.no_grad():
        z = model.encode(frames)[:, 0]  # [P, N, D]
    rhos = []
    for gi in (10, 16, 64, 70):  # goals near the four corners
        e = model.energy(z, z[gi : gi + 1]).numpy()
        rhos.append(_spearman(np.linalg.norm(pts - pts[gi], axis=1), e))
    return float(np.mean(rhos)), float(z.std(dim=0).mean())


def test_end_to_end_sigreg_keeps_latents_spread_and_grades_the_energy(tmp_path: Path) -> None:
    from vjepa.world.train import world_train

    shards = write_trajectory_shard(tmp_path / "traj" / "t-000000.tar", episodes=8, steps=16)
    overrides = [
        f"run.dir={tmp_path / 'run'}",
        f"data.shards={shards}",
        "run.trackers=[]",
        "run.log_every=5",
        "data.batch_size=16",
        "model.name=tiny_cpu",
        "model.patch_size=8",
        "world.frame_size=32",
        "world.pool=1",  # 4x4 tokens, flattened and projected to one latent vector
        "world.latent_dim=16",
        "world.encoder_trainable=true",
        "world.sigreg_weight=0.1",
        "world.window=3",
        "world.frameskip=1",
        "world.rollout_steps=1",
        "world.pred_width=32",
        "world.pred_depth=1",
        "world.pred_heads=2",
        "world.val_episodes=0",
        "train.max_steps=30",
        "train.checkpoint_every=30",
        "train.health_every=1000",
        "optim.lr=0.003",
        "optim.start_lr=0.003",
        "optim.final_lr=0.003",
        "optim.warmup_steps=0",
    ]
    run = world_train(load_config("configs/world/tworooms_e2e.yaml", overrides))
    model = load_world_model(run)  # the trained encoder + projector + predictor, strict loads
    pts, frames = _grid()
    rho, std = _landscape(model, frames, pts)
    print(f"e2e Spearman {rho:.3f} std {std:.3f}")

    # The same architecture at random init (encoder, projector and predictor), untrained.
    rho_init, _ = _landscape(random_init_like(model, seed=0), frames, pts)
    print(f"random-init Spearman {rho_init:.3f}")

    assert std > 0.3, f"latents collapsed across positions (std {std:.3f})"
    assert rho > rho_init + 0.1, f"energy not graded: Spearman {rho:.2f} vs init {rho_init:.2f}"
