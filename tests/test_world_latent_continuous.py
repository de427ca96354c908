"""A world model with a continuous latent (world.latent=continuous, issue #21): on a hand-made
bimodal transition the best of K prior draws of z is far below the deterministic predictor's
error while z carries about the one bit of the coin; with a huge KL weight z carries nothing;
the shuffled-context controls fail as they should; planning draws z from the prior (z = 0
without futures); export keeps z; a bad value names its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_world_latent import _bimodal, _checks, _save_run, _trained, tiny_world_overrides

from vjepa.config import ConfigError, PlanConfig, load_config
from vjepa.world.io import load_world_model, random_encoder
from vjepa.world.latent_continuous import kl_to_prior, prior_draws
from vjepa.world.model import WorldSpec, build_world_model
from vjepa.world.planning.costs import Futures

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def continuous_models():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # deterministic, a 4-d z at the default KL weight, the same z with a huge weight
        yield (
            _trained(0),
            _trained(0, z_dim=4, kl_weight=0.02),
            _trained(0, z_dim=4, kl_weight=100.0),
        )
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bimodal_checks(continuous_models):
    z, a, slip = _bimodal(1024, torch.Generator().manual_seed(9))
    return [_checks(m, z, a, slip) for m in continuous_models]


def test_continuous_latent_best_of_k_far_below_the_deterministic(bimodal_checks) -> None:
    d, c, _ = bimodal_checks
    assert c["latent_dim_z"] == 4 and c["latent_samples"] == 8
    # the best of 8 prior draws: far below the deterministic predictor, on both branches
    assert c["best_of_k"] < 0.5 * d["best_of_k"]
    assert c["branch_best_of_k"] < 0.5 * d["branch_best_of_k"]
    assert c["steady_best_of_k"] < 0.5 * d["steady_best_of_k"]
    # z = 0 (the prior mean) is no better than the deterministic model
    assert c["one_step_error"] > 0.8 * d["best_of_k"]
    # the posterior's own z is better still, and z holds about the coin's bit (ln 2 nats)
    assert c["posterior_error"] < c["best_of_k"]
    assert 0.3 < c["kl_nats"] < 3.0


def test_continuous_shuffled_context_control_fails_as_it_should(bimodal_checks) -> None:
    _, c, _ = bimodal_checks
    # z from another window's transition (or prior draws) with this window's target: far off,
    # no better than K input-agnostic latents. z alone does not predict the future.
    assert c["shuffled_posterior_error"] > 10 * c["posterior_error"]
    assert c["shuffled_best_of_k"] > 10 * c["best_of_k"]
    assert c["shuffled_posterior_error"] > 0.8 * c["codebook_best_of_k"]


def test_huge_kl_weight_leaves_z_without_information(bimodal_checks) -> None:
    d, _, h = bimodal_checks
    assert h["kl_nats"] < 0.01
    assert h["best_of_k"] == pytest.approx(d["best_of_k"], rel=0.1)
    assert h["best_of_k"] == pytest.approx(h["one_step_error"], rel=0.05)  # z does nothing


def test_kl_to_prior_and_prior_draws() -> None:
    assert kl_to_prior(torch.zeros(3, 4), torch.zeros(3, 4)).tolist() == [0.0] * 3
    # KL(N(1, 1) || N(0, 1)) = 1/2 per dim; KL(N(0, e^-2)) = (e^-2 - 1 + 2) / 2
    assert kl_to_prior(torch.ones(1, 2), torch.zeros(1, 2)).item() == pytest.approx(1.0)
    v = kl_to_prior(torch.zeros(1), torch.full((1,), -1.0)).item()
    assert v == pytest.approx(0.5 * (torch.e**-2 + 1.0))
    u = torch.tensor([[0.5, 0.975], [0.025, 0.8413447]])
    got = prior_draws(2, 1, 2, u)
    assert got.shape == (2, 1, 2)
    torch.testing.assert_close(
        got.flatten(), torch.tensor([0.0, 1.96, -1.96, 1.0]), atol=1e-3, rtol=0
    )


def test_continuous_rollout_planning_draws_and_export(tmp_path: Path) -> None:
    enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=32, seed=0)
    spec = WorldSpec(
        frame_size=32, pool=2, window=3, frameskip=2, action_low=[-1.0] * 2, action_high=[1.0] * 2
    )
    model = build_world_model(enc, spec, width=32, depth=1, heads=2, z_dim=3).eval()
    assert model.z_dim == 3 and model.codes == 0 and model.predictor.arch()["z_dim"] == 3
    z = model.encode(torch.randint(0, 255, (2, 1, 32, 32, 3), dtype=torch.uint8))
    acts = torch.rand(2, 6, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        plain = model.rollout(z, acts)  # z = 0, the prior mean
        zero = model.rollout(z, acts, codes=torch.zeros(2, 3, 3))
        other = model.rollout(z, acts, codes=torch.ones(2, 3, 3))
    torch.testing.assert_close(plain, zero, rtol=0, atol=0)
    assert not torch.allclose(plain, other)
    with pytest.raises(ValueError, match="z \\[B, T, 3\\]"):
        model.predictor(z, torch.zeros(2, 1, 4), codes=torch.zeros(2, 1, 2))
    # planning: futures=0 -> one rollout at z = 0; futures=M -> M draws per sequence, the
    # same draws for every sequence of a replan
    seqs = acts[:1].expand(3, -1, -1)
    one = Futures(model, 0)
    assert one.m == 1
    torch.testing.assert_close(one.rollout(z[:1], seqs)[0], plain[0], rtol=0, atol=1e-6)
    fut = Futures(model, 4)
    out = fut.rollout(z[:1], seqs)  # [3 * 4, 3, N, D]
    assert out.shape[0] == 12
    torch.testing.assert_close(out[:4], out[4:8], rtol=0, atol=0)
    assert not torch.allclose(out[0], out[1])
    assert fut.reduce(torch.arange(12.0), "worst", 1.0).tolist() == [3.0, 7.0, 11.0]
    back = load_world_model(_save_run(model, tmp_path))
    assert back.z_dim == 3
    with torch.no_grad():
        torch.testing.assert_close(back.rollout(z, acts, codes=torch.ones(2, 3, 3)), other)


def test_world_train_continuous_writes_the_checks(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    from vjepa.world.collect import collect
    from vjepa.world.train import world_train

    traj = tmp_path / "traj"
    collect("vjepa/IceRoom-v0", traj, episodes=6, steps=16, seed=0)
    over = tiny_world_overrides(tmp_path, traj) + [
        "world.latent=continuous",
        "world.latent_dim_z=2",
        "world.latent_samples=3",
    ]
    run = world_train(load_config("configs/world/tworooms_e2e.yaml", over))
    val = json.loads((run / "val.json").read_text())
    assert val["val_latent_dim_z"] == 2 and val["val_latent_samples"] == 3
    assert "val_kl" in val and val["val_kl_nats"] >= 0
    for key in ("best_of_k", "shuffled_best_of_k", "posterior_error", "shuffled_posterior_error"):
        assert val[f"val_{key}"] > 0
    assert 0 <= val["val_branch_fraction"] <= 1
    assert load_world_model(run).z_dim == 2


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("world.latent=gaussian", "world.latent"),
        ("world.latent_dim_z=0", "world.latent_dim_z"),
        ("world.kl_weight=-1", "world.kl_weight"),
        ("world.latent_samples=1", "world.latent_samples"),
    ],
)
def test_bad_continuous_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", "\\.")):
        load_config("configs/world/tworooms_e2e.yaml", [override])
    assert PlanConfig().futures == 0
