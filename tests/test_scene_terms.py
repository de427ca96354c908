"""Issue #25: the world-model terms for scenes that change per episode (inverse dynamics, the
within-window variance hinge, per-window centring) and the latent -> position probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa.config import ConfigError, WorldConfig, load_config
from vjepa.world.collect import collect
from vjepa.world.io import load_world_model, random_encoder
from vjepa.world.model import WorldSpec, build_world_model
from vjepa.world.scene_probe import position_probe, probe_targets
from vjepa.world.scene_terms import InverseDynamics, centre_windows, idm_loss, window_time_var
from vjepa.world.varied_rooms import VariedRoomsEnv


def _model(*, latent_dim: int = 0, centre: bool = False, idm: bool = False, trainable=False):
    enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=32, seed=0)
    enc.requires_grad_(trainable)
    spec = WorldSpec(
        frame_size=32,
        pool=2,
        window=4,
        action_low=[-2.0, -1.0],
        action_high=[2.0, 1.0],
        latent_dim=latent_dim,
        pred_norm="none" if latent_dim else "layer",
        centre=centre,
    )
    gen = torch.Generator().manual_seed(1)
    return build_world_model(enc, spec, width=32, depth=1, heads=2, generator=gen, idm=idm)


def _batch(model, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, d = (1, model.spec.latent_dim) if model.spec.latent_dim else (4, model.encoder.embed_dim)
    z = torch.nn.functional.layer_norm(torch.randn(3, 4, n, d, generator=g), (d,))
    actions = (torch.rand(3, 3, 2, generator=g) * 2 - 1) * torch.tensor([2.0, 1.0])
    return z, actions


# -- config -------------------------------------------------------------------------------------


def test_scene_keys_default_off_and_reject_bad_values() -> None:
    w = WorldConfig()
    assert (w.idm_weight, w.time_var, w.centre) == (0.0, 0.0, False)
    cfg = load_config(
        "configs/world/tworooms_e2e.yaml",
        ["world.idm_weight=0.5", "world.time_var=0.2", "world.centre=true"],
    )
    assert (cfg.world.idm_weight, cfg.world.time_var, cfg.world.centre) == (0.5, 0.2, True)
    with pytest.raises(ConfigError, match="world.idm_weight"):
        load_config("configs/world/tworooms_e2e.yaml", ["world.idm_weight=-1"])
    with pytest.raises(ConfigError, match="world.time_var"):
        load_config("configs/world/tworooms_e2e.yaml", ["world.time_var=-0.1"])


# -- inverse dynamics ---------------------------------------------------------------------------


def test_idm_head_learns_actions_that_the_latents_carry() -> None:
    """z_{t+1} = z_t + M a_t: the head recovers a_t far better than the mean action does."""
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(2, 16, generator=g)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.rand(n, 3, 2, generator=g) * 2 - 1  # [B, W-1, 2] in [-1, 1]
        z0 = torch.randn(n, 1, 1, 16, generator=g)
        steps = (a @ mix)[:, :, None]  # [B, 3, 1, 16]
        return torch.cat([z0, z0 + steps.cumsum(1)], dim=1), a  # [B, 4, 1, 16]

    head = InverseDynamics(16, 2, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(300):
        z, a = batch(64)
        loss = idm_loss(head, z, a)
        opt.zero_grad()
        loss.backward()
        opt.step()
    z, a = batch(512)  # held out
    with torch.no_grad():
        held = float(idm_loss(head, z, a))
    mean_action = float(((a - a.mean(dim=(0, 1))) ** 2).mean())  # ~1/3
    assert held < 0.05 * mean_action, (held, mean_action)


def test_idm_weight_zero_leaves_the_loss_bit_identical_and_its_gradient_reaches_the_latent() -> (
    None
):
    plain, with_head = _model(latent_dim=16), _model(latent_dim=16, idm=True)
    z, a = _batch(plain)
    frames = torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8)
    kw = dict(rollout_steps=2, sigreg_weight=0.1)
    base, _ = plain(a, latents=z, **kw)
    same, terms = with_head(a, latents=z, idm_weight=0.0, **kw)
    assert torch.equal(base, same) and "idm" not in terms
    on, terms = with_head(a, latents=z, idm_weight=1.0, **kw)
    assert "idm" in terms and not torch.equal(on, base)
    assert float(on.detach()) == pytest.approx(float(base.detach()) + float(terms["idm"]), rel=1e-6)
    with pytest.raises(ValueError, match="idm_weight"):
        plain(a, latents=z, idm_weight=1.0, **kw)
    # End to end: the IDM term alone moves the projection and the encoder (like SIGReg).
    model = _model(latent_dim=16, idm=True, trainable=True)
    fa = a[:2]
    on, _ = model(fa, frames=frames, idm_weight=1.0, **kw)
    off, _ = model(fa, frames=frames, idm_weight=0.0, **kw)
    (on - off).backward()  # the gradient of the IDM term only
    assert model.projector[0].weight.grad.abs().sum() > 0
    enc_grad = sum(p.grad.abs().sum() for p in model.encoder.parameters() if p.grad is not None)
    assert enc_grad > 0
    assert model.idm.mlp[0].weight.grad.abs().sum() > 0


# -- within-window variance ---------------------------------------------------------------------


def test_time_var_penalises_a_latent_constant_over_time_not_one_that_moves() -> None:
    g = torch.Generator().manual_seed(0)
    still = torch.randn(8, 1, 4, 16, generator=g).expand(8, 4, 4, 16)  # differs per window only
    moving = torch.randn(8, 1, 4, 16, generator=g) + 3 * torch.randn(8, 4, 4, 16, generator=g)
    assert float(window_time_var(still)) > 0.95
    assert float(window_time_var(moving)) < 0.05
    model = _model()
    z, a = _batch(model)
    base, _ = model(a, latents=z, rollout_steps=2)
    on, terms = model(a, latents=z, rollout_steps=2, time_var=0.5)
    assert float(on.detach()) == pytest.approx(
        float(base.detach()) + 0.5 * float(terms["time_var"]), rel=1e-6
    )


# -- centring -----------------------------------------------------------------------------------


def test_centring_makes_the_loss_blind_to_a_per_window_constant() -> None:
    z, a = _batch(_model())
    shift = 2.0 * torch.randn(z.shape[0], 1, *z.shape[2:], generator=torch.Generator())
    assert torch.allclose(centre_windows(z + shift), centre_windows(z), atol=1e-5)
    for centre in (True, False):
        model = _model(centre=centre)
        with torch.no_grad():
            clean, _ = model(a, latents=z, rollout_steps=2)
            shifted, _ = model(a, latents=z + shift, rollout_steps=2)
        if centre:
            assert float(shifted) == pytest.approx(float(clean), abs=1e-5)
        else:
            assert abs(float(shifted) - float(clean)) > 1e-2


# -- the position probe -------------------------------------------------------------------------


def test_probe_finds_the_agent_in_a_latent_made_of_its_position_not_the_distractor() -> None:
    env = VariedRoomsEnv()
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(2, 12))

    def trajectory(seed: int):
        start, _ = env.sample_task(seed)
        states = np.repeat(start[None], 30, axis=0).astype(np.float64)
        states[:, :2] = rng.uniform(0.05, 0.95, size=(30, 2))  # the agent moves, the scene not
        z = states[:, :2] @ mix + 0.01 * rng.normal(size=(30, 12))
        return torch.from_numpy(z)[:, None].float(), probe_targets(env, states)

    train = [trajectory(s) for s in range(20)]
    val = [trajectory(100 + s) for s in range(8)]
    report = position_probe(
        [z for z, _ in train], [t for _, t in train], [z for z, _ in val], [t for _, t in val]
    )
    assert set(report) == {"probe_r2_agent", "probe_r2_distractor"}
    assert report["probe_r2_agent"] > 0.99
    assert report["probe_r2_distractor"] < 0.3
    # Without probe_targets (and for the plain env): the agent only, states[:, :2].
    assert set(probe_targets(object(), np.zeros((3, 5)))) == {"agent"}
    assert set(probe_targets(VariedRoomsEnv(distractor=False), np.zeros((3, 8)))) == {"agent"}


def test_world_train_writes_the_probe_and_the_terms(tmp_path: Path) -> None:
    """A few steps of `vjepa world train` end to end on VariedRooms trajectories with every
    term on: the terms are logged, val.json has the probe, the model loads back."""
    from vjepa.train.metrics import read_metrics
    from vjepa.world.train import world_train

    traj = tmp_path / "traj"
    collect("vjepa/VariedRooms-v0", traj, episodes=6, steps=12, seed=0, progress=False)
    over = [
        f"run.dir={tmp_path / 'run'}",
        f"data.shards={traj}",
        "run.trackers=[]",
        "run.log_every=1",
        "data.batch_size=4",
        "world.val_episodes=2",
        "world.pred_depth=1",
        "world.pred_width=32",
        "world.pred_heads=2",
        "world.frameskip=2",
        "world.idm_weight=1.0",
        "world.time_var=0.1",
        "world.centre=true",
        "train.max_steps=3",
        "train.checkpoint_every=3",
        "train.health_every=1000",
        "world.hazard_steps=0",
    ]
    run = world_train(load_config("configs/world/tworooms_e2e.yaml", over))
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert {"idm", "time_var", "sigreg"} <= set(rows[-1])
    val = json.loads((run / "val.json").read_text())
    # 3 steps on 4 trajectories: any R² <= 1 (negative: worse than the val mean)
    assert np.isfinite(val["val_probe_r2_agent"]) and val["val_probe_r2_agent"] <= 1.0
    assert np.isfinite(val["val_probe_r2_distractor"]) and val["val_probe_r2_distractor"] <= 1.0
    wm = load_world_model(run)
    assert wm.spec.centre and wm.idm is None  # the head trains the latent; it is not shipped


def test_planning_centres_the_frame_and_the_goal_by_their_mean() -> None:
    model = _model(centre=True).eval()
    g = torch.Generator().manual_seed(0)
    obs, goal = (torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8) for _ in "ab")
    seqs = torch.rand(5, 4, 2, generator=g) * 2 - 1
    cost = model.plan_cost(obs.numpy(), goal.numpy(), "final")(seqs)
    with torch.no_grad():
        z0, zg = model.encode(obs[None, None]), model.encode(goal[None, None])[:, 0]
        mean = (z0[:, 0] + zg) / 2
        pred = model.rollout((z0 - mean[:, None]).expand(5, -1, -1, -1), seqs)[:, -1]
        want = model.energy(pred, zg - mean)
    torch.testing.assert_close(cost, want)
    plain = _model(centre=False).eval()
    assert not torch.allclose(plain.plan_cost(obs.numpy(), goal.numpy(), "final")(seqs), want)
