"""A world model with a discrete latent (world.latent=discrete, issue #21): the default stays
the deterministic model bit for bit, the codes recover the branches of a bimodal transition,
the shuffled-context control fails as it should, rollouts follow the codes, and planning over
the futures by plan.risk avoids a hazard that the expected energy accepts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa.config import PlanConfig, load_config
from vjepa.world.io import load_world_model, random_encoder
from vjepa.world.latent import (
    code_from_uniform,
    fit_codebook,
    latent_world_losses,
    latin_uniforms,
    prediction_checks,
)
from vjepa.world.losses import world_losses
from vjepa.world.model import WorldSpec, build_world_model
from vjepa.world.planning.costs import ModelCost, risk_reduce
from vjepa.world.planning.planners import plan_actions

pytestmark = pytest.mark.usefixtures("one_thread")


def _sha(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def test_latent_none_is_the_deterministic_model_of_before() -> None:
    # Golden values from the commit before the latent existed (f6ddc14), same script: the
    # initial weights bit for bit, the losses of three Adam steps to float precision.
    enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=32, seed=0)
    spec = WorldSpec(
        frame_size=32, pool=2, window=4, frameskip=2, action_low=[-1.0] * 2, action_high=[1.0] * 2
    )
    gen = torch.Generator().manual_seed(1)
    model = build_world_model(enc, spec, width=32, depth=2, heads=2, generator=gen)
    assert model.codes == 0 and "codes" not in model.predictor.arch()
    assert _sha(model.predictor) == "55f6d88d6132471f"
    g = torch.Generator().manual_seed(5)
    z = F.layer_norm(torch.randn(6, 4, 4, 96, generator=g), (96,))
    a = torch.rand(6, 3, 4, generator=g) * 2 - 1
    opt = torch.optim.Adam(model.predictor.parameters(), lr=1e-3)
    golden = [
        (2.2673792839050293, 1.1430879831314087, 1.1242913007736206),
        (2.1749181747436523, 1.1085920333862305, 1.0663261413574219),
        (2.1013901233673096, 1.07918119430542, 1.0222089290618896),
    ]
    for want in golden:
        loss, terms = model(a, latents=z, rollout_steps=2)
        got = (loss.item(), terms["teacher_forcing"].item(), terms["rollout"].item())
        assert got == pytest.approx(want, rel=1e-6, abs=0)
        # ... and it is exactly the deterministic objective of world/losses.py
        tf, ar = world_losses(model.step, z, a, rollout_steps=2)
        assert torch.equal(loss, tf + ar)
        opt.zero_grad()
        loss.backward()
        opt.step()


# ----------------------------------------------------------------------------------------
# A hand-made bimodal transition
# ----------------------------------------------------------------------------------------

D = 8
_V = torch.randn(D, generator=torch.Generator().manual_seed(0))
_V = 1.5 * _V / _V.norm()  # the move direction


def _bimodal(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(latents [n, 2, 1, D], actions [n, 1, 2], slipped [n]): the next latent is the current
    one moved by action[0] x V, or by three times that (a slip, probability 1/2)."""
    x = F.layer_norm(torch.randn(n, D, generator=gen), (D,))
    a = torch.rand(n, 1, 2, generator=gen) * 2 - 1
    slip = torch.rand(n, generator=gen) < 0.5
    y = F.layer_norm(x + a[:, 0, :1] * _V * (1 + 2 * slip[:, None].float()), (D,))
    return torch.stack([x, y], 1)[:, :, None], a, slip


def _trained(codes: int, steps: int = 500, z_dim: int = 0, kl_weight: float = 0.0):
    """A model trained on the bimodal transition: K codes, a continuous z_dim-dim latent
    (tests/test_world_latent_continuous.py) or neither."""
    enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=32, seed=0)
    spec = WorldSpec(
        frame_size=32, pool=4, window=2, action_low=[-1.0] * 2, action_high=[1.0] * 2, latent_dim=D
    )
    gen = torch.Generator().manual_seed(1)
    model = build_world_model(
        enc, spec, width=32, depth=1, heads=2, codes=codes, z_dim=z_dim, generator=gen
    )
    opt = torch.optim.Adam(model.predictor.parameters(), lr=3e-3)
    data, noise = torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)
    for _ in range(steps):
        z, a, _ = _bimodal(64, data)
        loss, _ = model(
            a, latents=z, rollout_steps=0, latent_relax=0.05, kl_weight=kl_weight,
            sigreg_generator=noise,  # the continuous latent's posterior noise
        )  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def bimodal_models():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _trained(0), _trained(2)
    finally:
        torch.set_num_threads(before)


def _checks(model, z, a, slip):
    cb = fit_codebook(z[:, 1], max(model.codes, 1))
    win = [{"latents": z, "actions": a, "states": None}]
    return prediction_checks(model, win, [slip[:, None]], cb, seed=0)


def test_discrete_latent_recovers_both_branches(bimodal_models) -> None:
    det, lat = bimodal_models
    z, a, slip = _bimodal(1024, torch.Generator().manual_seed(9))
    # the error of the mean's prediction (LN(x + 2 a V)), what a deterministic model can do
    mean = F.layer_norm(z[:, 0, 0] + a[:, 0, :1] * _V * 2, (D,))
    mean_err = float((mean - z[:, 1, 0]).abs().mean())
    d, k = _checks(det, z, a, slip), _checks(lat, z, a, slip)
    assert d["best_of_k"] == pytest.approx(mean_err, rel=0.3)
    assert k["best_of_k"] < 0.25 * d["best_of_k"]
    assert k["branch_best_of_k"] < 0.25 * d["branch_best_of_k"]  # both branches, not one
    assert k["steady_best_of_k"] < 0.25 * d["steady_best_of_k"]
    # The two codes are the two branches: for every input, one code predicts the move and the
    # other the slip (which code is which may depend on the input).
    x, step = z[:, 0, 0], a[:, 0, :1] * _V
    branches = torch.stack([F.layer_norm(x + step, (D,)), F.layer_norm(x + 3 * step, (D,))], 1)
    with torch.no_grad():
        preds, _ = lat.step_all(z[:, :1], a)
    p = preds[:, 0, :, 0]  # [n, K=2, D]
    same = ((p - branches).abs().mean(-1)).mean(-1)  # code 0 -> move, code 1 -> slip
    swap = ((p - branches.flip(1)).abs().mean(-1)).mean(-1)
    moving = a[:, 0, 0].abs() > 0.3  # where the branches are apart
    assert float(torch.minimum(same, swap)[moving].mean()) < 0.25 * d["best_of_k"]
    # The router cannot know the coin: it splits its probability where the branches are apart.
    with torch.no_grad():
        probs = lat.predictor.route(lat.predictor.features(z[:, :1], a)).softmax(-1)[:, 0]
    assert float(probs[moving].min(-1).values.mean()) > 0.25


def test_shuffled_context_control_fails_as_it_should(bimodal_models) -> None:
    _, lat = bimodal_models
    z, a, slip = _bimodal(1024, torch.Generator().manual_seed(9))
    k = _checks(lat, z, a, slip)
    # z alone does not predict the future: with another window's context the best of the
    # codes is far off, and no better than K input-agnostic latents.
    assert k["shuffled_best_of_k"] > 10 * k["best_of_k"]
    assert k["shuffled_best_of_k"] > 0.8 * k["codebook_best_of_k"]
    assert k["codebook_best_of_k"] > 10 * k["best_of_k"]
    assert k["latent_codes"] == 2 and 0 <= k["router_accuracy"] <= 1


def test_latent_losses_on_a_hand_case() -> None:
    # Two codes predict z + 1 and z + 3; truths move by 1 then 3: winners 0 then 1, errors 0.
    z = torch.tensor([0.0, 1.0, 4.0]).view(1, 3, 1, 1)
    a = torch.zeros(1, 2, 1)

    def step_all(ctx, acts, s):  # [B, T, K, 1, 1], logits [B, T, K]
        preds = torch.stack([ctx + 1.0, ctx + 3.0], 2)
        return preds, torch.zeros(*ctx.shape[:2], 2)

    tf, ar, router = latent_world_losses(step_all, z, a, rollout_steps=2)
    assert tf.item() == 0.0 and ar.item() == 0.0
    assert router.item() == pytest.approx(np.log(2.0))
    tf_r, _, _ = latent_world_losses(step_all, z, a, rollout_steps=0, relax=0.5)
    assert tf_r.item() == pytest.approx(0.5 * 2.0 / 2)  # half the mean over codes (0 and 2)


def test_codes_drive_rollouts_and_survive_export(tmp_path: Path) -> None:
    from vjepa.world.io import export_world_model, random_init_like

    enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=32, seed=0)
    spec = WorldSpec(
        frame_size=32, pool=2, window=3, frameskip=2, action_low=[-1.0] * 2, action_high=[1.0] * 2
    )
    model = build_world_model(enc, spec, width=32, depth=1, heads=2, codes=3).eval()
    z = model.encode(torch.randint(0, 255, (2, 1, 32, 32, 3), dtype=torch.uint8))
    acts = torch.rand(2, 6, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a = model.rollout(z, acts, codes=torch.zeros(2, 3, dtype=torch.long))
        b = model.rollout(z, acts, codes=torch.tensor([[0, 0, 0], [2, 2, 2]]))
        c = model.rollout(z, acts, codes=torch.tensor([[0, 1, 1], [0, 0, 0]]))
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
        assert not torch.allclose(a[1], b[1])
        torch.testing.assert_close(a[0, 0], c[0, 0], rtol=0, atol=0)  # code 1 acts from step 1
        assert not torch.allclose(a[0, 1], c[0, 1])
        # one rollout step with code k is the teacher-forced prediction of code k
        preds, _ = model.step_all(z, model.macro_actions(acts[:, :2]))
        torch.testing.assert_close(b[1, 0], preds[1, 0, 2])
        # uniforms pick the codes by the router's CDF; no codes: its most likely code
        assert model.rollout(z, acts, uniforms=torch.rand(2, 3)).shape == a.shape
    with pytest.raises(ValueError, match="pass codes"):
        model.predictor(z, torch.zeros(2, 1, 4))
    export_world_model_dir = export_world_model(_save_run(model, tmp_path), tmp_path / "export")
    back = load_world_model(export_world_model_dir)
    assert back.codes == 3
    with torch.no_grad():
        torch.testing.assert_close(back.rollout(z, acts, codes=b.new_zeros(2, 3).long()), a)
    assert random_init_like(model).codes == 3


def _save_run(model, tmp_path: Path) -> Path:
    """An export folder of ``model`` (what load_world_model reads), through the public writer."""
    from safetensors.torch import save_file

    from vjepa.world.io import world_description

    out = tmp_path / "run"
    out.mkdir()
    save_file(
        {k: v.contiguous() for k, v in model.encoder.encoder.state_dict().items()},
        str(out / "encoder.safetensors"),
    )
    save_file(model.predictor.state_dict(), str(out / "predictor.safetensors"))
    (out / "config.json").write_text(json.dumps(world_description(model)))
    return out


def test_code_from_uniform_and_latin_uniforms() -> None:
    probs = torch.tensor([[0.75, 0.25], [0.0, 1.0], [0.5, 0.5]])
    u = torch.tensor([0.74, 0.2, 0.51])
    assert code_from_uniform(probs, u).tolist() == [0, 1, 1]
    assert code_from_uniform(probs[:1], torch.tensor([0.76])).tolist() == [1]
    u = latin_uniforms(4, 3, torch.Generator().manual_seed(0))
    assert u.shape == (4, 3)
    for s in range(3):  # one draw in each quarter at every step
        assert sorted((u[:, s] * 4).floor().long().tolist()) == [0, 1, 2, 3]


# ----------------------------------------------------------------------------------------
# Planning over the futures: the risk measure
# ----------------------------------------------------------------------------------------


class _IceLine:
    """A hand-made world model with two codes on a line (the contract of vjepa.world.model):
    the latent is the position x; an action a moves it by a, and with code 1 (the router's
    probability 1/4) a move to the right slips one unit further."""

    codes, frameskip = 2, 1

    def encode(self, frames: Tensor) -> Tensor:  # uint8 [B, T, H, W, 3] -> [B, T, 1, 1]
        return frames[..., :1, :1, 0].float() / 100.0

    def rollout(self, z, actions, *, codes=None, uniforms=None):  # -> [B, H, 1, 1]
        x, out = z[:, -1, 0, 0], []
        probs = torch.tensor([[0.75, 0.25]]).expand(len(x), -1)
        for h in range(actions.shape[1]):
            k = codes[:, h] if codes is not None else code_from_uniform(probs, uniforms[:, h])
            a = actions[:, h, 0]
            x = x + a + (k == 1).float() * (a > 0).float()
            out.append(x)
        return torch.stack(out, 1)[:, :, None, None]

    def energy(self, z_pred: Tensor, z_goal: Tensor) -> Tensor:
        return (z_pred - z_goal).abs().mean(dim=(-2, -1))


class _Lava(nn.Module):
    """Hazard probability of a latent map [..., 1, 1]: lava beyond x = 1.6."""

    def prob(self, z: Tensor) -> Tensor:
        return torch.sigmoid(50.0 * (z[..., 0, 0] - 1.6))


def _frame(x: float) -> np.ndarray:
    return np.full((4, 4, 3), int(round(100 * x)), dtype=np.uint8)


@pytest.mark.parametrize("risk", ["mean", "cvar", "worst"])
def test_risk_worst_avoids_the_lava_that_the_mean_accepts(risk: str) -> None:
    from vjepa.world.planning.guard import GuardedModelCost

    # Start 0, goal 1, lava beyond 1.6. a = 1 reaches the goal unless it slips (1/4) into the
    # lava (energy 1 + 0.5); a = 0.5 never reaches the lava (energy 0.5 either way). Expected
    # energy prefers a = 1 (0.375 < 0.5), the worst future a = 0.5; CVaR of the worst quarter
    # of 4 futures is the worst one.
    pcfg = PlanConfig(
        horizon=1, samples=64, iterations=4, elites=8, guard_weight=0.5, risk=risk, futures=4
    )
    low, high = torch.tensor([-1.0]), torch.tensor([1.0])
    builder = GuardedModelCost(_IceLine(), pcfg, torch.device("cpu"), low, high, hazard=_Lava())
    cost = builder(_frame(0.0), None, _frame(1.0), None)
    e = cost(torch.tensor([[[1.0]], [[0.5]]]))
    assert e[0] < e[1] if risk == "mean" else e[0] > e[1]
    plan = plan_actions(cost, pcfg, low, high, generator=torch.Generator().manual_seed(0))
    a = float(plan[0, 0])
    if risk == "mean":
        assert a > 0.6  # its slipping future ends in the lava
    else:
        assert 0.3 < a <= 0.6  # no future reaches the lava


def test_risk_reduce_and_model_cost_futures() -> None:
    e = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
    assert risk_reduce(e, "mean").item() == 4.0
    assert risk_reduce(e, "worst").item() == 10.0
    assert risk_reduce(e, "cvar", 0.5).item() == 6.5
    assert risk_reduce(e, "cvar", 1.0).item() == 4.0
    with pytest.raises(ValueError, match="plan.risk"):
        risk_reduce(e, "median")
    # The plain latent cost: every candidate shares the replan's draws (same sequence, same
    # energy), the mean below the worst.
    cost = ModelCost(_IceLine(), "final", torch.device("cpu"), risk="mean", futures=8)
    c = cost(_frame(0.0), None, _frame(1.0), None)
    seqs = torch.tensor([[[1.0]], [[1.0]], [[0.5]]])
    got = c(seqs)
    assert got[0] == got[1] and got[0].item() == pytest.approx(0.25)  # 2 of 8 futures slip
    worst = ModelCost(_IceLine(), "final", torch.device("cpu"), risk="worst", futures=8)
    assert worst(_frame(0.0), None, _frame(1.0), None)(seqs)[0].item() == pytest.approx(1.0)


def test_world_train_discrete_writes_the_checks(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    from vjepa.world.collect import collect
    from vjepa.world.train import world_train

    traj = tmp_path / "traj"
    collect("vjepa/IceRoom-v0", traj, episodes=6, steps=16, seed=0)
    over = tiny_world_overrides(tmp_path, traj) + ["world.latent=discrete", "world.latent_codes=3"]
    run = world_train(load_config("configs/world/tworooms_e2e.yaml", over))
    val = json.loads((run / "val.json").read_text())
    assert val["val_latent_codes"] == 3 and "val_router" in val
    for key in ("best_of_k", "shuffled_best_of_k", "codebook_best_of_k", "one_step_error"):
        assert val[f"val_{key}"] > 0
    assert 0 <= val["val_branch_fraction"] <= 1  # IceRoom says where it branches
    # IceRoom reports violation flags, but never a violation: no hazard head to learn
    assert val["hazard_positives"] == 0 and not (run / "hazard.pt").exists()
    assert load_world_model(run).codes == 3


def tiny_world_overrides(tmp_path: Path, traj: Path) -> list[str]:
    """A 4-step `world train` of a tiny end-to-end model on ``traj`` into tmp_path/run."""
    return [
        f"run.dir={tmp_path / 'run'}",
        f"data.shards={traj}",
        "run.trackers=[]",
        "data.batch_size=8",
        "world.frame_size=32",
        "world.pool=2",
        "world.window=3",
        "world.frameskip=2",
        "world.pred_width=32",
        "world.pred_depth=1",
        "world.pred_heads=2",
        "world.val_episodes=2",
        "train.max_steps=4",
        "train.checkpoint_every=4",
        "train.health_every=1000",
    ]


def test_pred_norm_none_leaves_the_prediction_unnormalised() -> None:
    enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=32, seed=0)
    kw = dict(frame_size=32, pool=4, window=2, action_low=[-1.0] * 2, action_high=[1.0] * 2)
    z, a = torch.randn(3, 1, 1, 96), torch.zeros(3, 1, 2)
    for norm in ("layer", "none"):
        spec = WorldSpec(**kw, pred_norm=norm)
        model = build_world_model(enc, spec, width=32, depth=1, heads=2)
        out = model.step(z, a)
        normed = F.layer_norm(out, (96,))
        assert torch.allclose(out, normed, atol=1e-2) == (norm == "layer")
    with pytest.raises(ValueError, match="pred_norm"):
        build_world_model(enc, WorldSpec(**kw, pred_norm="batch"), width=32, depth=1, heads=2)
