"""The world model's training objective (world/losses.py) on a hand-made case."""

from __future__ import annotations

import pytest
import torch

from vjepa.world.losses import world_losses


def _shift_step(z: torch.Tensor, a: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """A hand-made 'predictor': next = current + 2 * action (the true dynamics add 1 * action)."""
    return z + 2.0 * a[..., None, :1]  # [B, T, N, D] with D = 1


def test_rollout_loss_on_a_hand_case() -> None:
    # True latents z_t = t (one token, one channel), actions all 1: z_{t+1} = z_t + a_t.
    W = 5
    z = torch.arange(W, dtype=torch.float32).view(1, W, 1, 1)
    a = torch.ones(1, W - 1, 1)
    tf, ar = world_losses(_shift_step, z, a, rollout_steps=3)
    # Teacher forcing: every prediction is z_t + 2 vs z_t + 1 -> error 1.
    assert tf.item() == pytest.approx(1.0)
    # Rollout from z_0: predictions 2, 4, 6 vs truths 1, 2, 3 -> errors 1, 2, 3 -> mean 2.
    assert ar.item() == pytest.approx(2.0)
    # The original V-JEPA 2-AC slice (z_tf[:, 1], the prediction of frame 2, put in frame 1's
    # slot) gives predictions 3, 5, 7 -> errors 2, 3, 4 -> mean 3: a different, wrong value.
    z_tf = _shift_step(z[:, :-1], a, None)
    buggy = torch.cat([z[:, :1], z_tf[:, 1:2]], dim=1)
    for n in range(1, 3):
        buggy = torch.cat([buggy, _shift_step(buggy, a[:, : n + 1], None)[:, -1:]], dim=1)
    assert (buggy[:, 1:] - z[:, 1:4]).abs().mean().item() == pytest.approx(3.0)
    tf0, none = world_losses(_shift_step, z, a, rollout_steps=0)
    assert none is None and tf0.item() == pytest.approx(1.0)
