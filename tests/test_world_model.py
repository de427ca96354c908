"""World model: block-causal predictor, encode / rollout / energy, training inputs, export
round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa.world.io import load_world_model, random_encoder
from vjepa.world.model import WorldSpec, build_world_model
from vjepa.world.predictor import ACPredictor, block_causal_mask


def tiny_model(frameskip: int = 1, pool: int = 1, state_dim: int = 0):
    """A random-init world model over 32 px frames (shared with the planning-cost tests)."""
    enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=32, seed=0)
    spec = WorldSpec(
        frame_size=32,
        pool=pool,
        window=4,
        frameskip=frameskip,
        action_low=[-1.0, -1.0],
        action_high=[1.0, 1.0],
        state_dim=state_dim,
    )
    gen = torch.Generator().manual_seed(1)
    return build_world_model(enc, spec, width=32, depth=2, heads=2, generator=gen)


def test_block_causal_mask_blocks_the_future() -> None:
    m = block_causal_mask(3, 2)
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(m, expected)


def test_predictor_output_at_step_t_ignores_later_frames_actions_and_states() -> None:
    g = torch.Generator().manual_seed(0)
    pred = ACPredictor(
        embed_dim=16, width=32, depth=2, heads=2, grid_hw=(2, 2), action_dim=2, state_dim=3
    )
    z = torch.randn(2, 4, 4, 16, generator=g)  # [B, T, N, D]
    a = torch.randn(2, 4, 2, generator=g)
    s = torch.randn(2, 4, 3, generator=g)
    out = pred(z, a, s)  # [B, T, N, D]
    z2, a2, s2 = z.clone(), a.clone(), s.clone()
    z2[:, 2] += 5.0  # perturb frame 2, action 2 and state 2
    a2[:, 2] -= 3.0
    s2[:, 2] += 1.0
    out2 = pred(z2, a2, s2)
    diff = (out - out2).abs().amax(dim=(0, 2, 3))  # [T]
    assert diff[:2].max() == 0.0  # steps 0, 1 never see step 2
    assert diff[2] > 1e-3 and diff[3] > 1e-3  # steps 2, 3 do
    # Without the mask the past WOULD change: the test can fail.
    full = pred.predictor_blocks[0].attn
    x = torch.randn(1, 6, 32, generator=g)
    y = x.clone()
    y[:, 5] += 1
    assert (full(x)[:, 0] - full(y)[:, 0]).abs().max() > 0


def test_rollout_matches_step_by_step_prediction_and_frameskip_groups_actions() -> None:
    model = tiny_model(frameskip=2, pool=2).eval()
    frames = torch.randint(0, 255, (1, 1, 32, 32, 3), dtype=torch.uint8)
    z = model.encode(frames)  # [1, 1, N, D]
    assert z.shape == (1, 1, 4, 96)
    acts = torch.rand(3, 6, 2) * 2 - 1  # 6 env actions = 3 model steps of 2
    with torch.no_grad():
        out = model.rollout(z.expand(3, -1, -1, -1), acts)  # [3, 3, N, D]
        macro = acts.reshape(3, 3, 4)
        first = model.step(z.expand(3, -1, -1, -1), macro[:, :1])[:, -1]
    assert out.shape == (3, 3, 4, 96)
    torch.testing.assert_close(out[:, 0], first)
    with pytest.raises(ValueError, match="whole number of model steps"):
        model.rollout(z, acts[:1, :5])
    with pytest.raises(ValueError, match="2-d actions"):
        model.rollout(z, torch.zeros(1, 2, 3))


def test_export_round_trip_gives_the_same_rollouts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from vjepa.world.io import export_world_model, world_description

    model = tiny_model(pool=2).eval()
    # A world train run folder by hand: world.json + a checkpoint with the two children.
    import json

    from vjepa.train.checkpoint import save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (run / "world.json").write_text(json.dumps(world_description(model)))
    state = {
        "encoder": dict(model.encoder.state_dict()),
        "predictor": dict(model.predictor.state_dict()),
    }
    save_checkpoint(run, 3, state=state, keep_last=1, weight_keys=("encoder", "predictor"))
    out = export_world_model(run, tmp_path / "export")
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "encoder.safetensors",
        "predictor.safetensors",
    }
    loaded = load_world_model(out)
    frames = torch.randint(0, 255, (2, 2, 32, 32, 3), dtype=torch.uint8)
    acts = torch.rand(2, 3, 2) * 2 - 1
    with torch.no_grad():
        z, z2 = model.encode(frames), loaded.encode(frames)
        torch.testing.assert_close(z2, z, rtol=0, atol=0)
        torch.testing.assert_close(
            loaded.rollout(z2[:, -1:], acts), model.rollout(z[:, -1:], acts), rtol=0, atol=0
        )
    assert loaded.action_dim == 2 and loaded.frame_size == 32
    # A wrong predictor file is a strict-load error naming the key.
    bad = dict(model.predictor.state_dict())
    bad.pop("action_encoder.bias")
    save_file({k: v.contiguous() for k, v in bad.items()}, str(out / "predictor.safetensors"))
    from vjepa.artifacts.official import WeightsMismatchError

    with pytest.raises(WeightsMismatchError, match="action_encoder.bias"):
        load_world_model(out)
    with pytest.raises(FileNotFoundError, match="not a world model"):
        load_world_model(tmp_path)


def test_forward_takes_latents_or_frames_never_both() -> None:
    model = tiny_model(pool=2).eval()
    frames = torch.randint(0, 255, (2, 4, 32, 32, 3), dtype=torch.uint8)  # [B, W, H, W, 3]
    acts = torch.rand(2, 3, 2) * 2 - 1  # [B, W-1, A]
    with torch.no_grad():
        latents = model.encode(frames)  # [B, W, N, D]
        by_latents, _ = model(acts, latents=latents, rollout_steps=2)
        by_frames, _ = model(acts, frames=frames, rollout_steps=2)
    torch.testing.assert_close(by_frames, by_latents, rtol=0, atol=0)
    with pytest.raises(ValueError, match="exactly one"):
        model(acts, latents=latents, frames=frames, rollout_steps=2)
    with pytest.raises(ValueError, match="exactly one"):
        model(acts, rollout_steps=2)
    assert not model.encoder_trainable  # random_encoder is frozen until training says so


def test_blurred_energy_is_zero_at_the_goal_and_grows_away_from_it() -> None:
    model = tiny_model(frameskip=2, pool=2).eval()
    obs = np.full((32, 32, 3), 200, dtype=np.uint8)
    goal = obs.copy()
    goal[4:10, 20:26] = 30
    model.spec.energy_blur = 1.0
    z = model.encode(torch.from_numpy(np.stack([goal, obs]))[:, None])[:, 0]  # [2, N, D]
    e = model.energy(z, z[:1])
    assert e[0] == 0 and e[1] > 0
