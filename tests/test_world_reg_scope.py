"""world.reg_scope: the world model's SIGReg over 2 gloo ranks (global) == 1 process on the
concatenated batch, in loss and in gradients (issue #26, like objective.reg_scope)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_world_model import tiny_model
from torch import Tensor
from train_utils import ROOT, free_port, run_env, spawn_ranks

from vjepa.config import load_config
from vjepa.config.load import ConfigError
from vjepa.train.metrics import read_metrics
from vjepa.world.collect import collect

WORLD, B = 2, 3  # each rank holds B of the 2B windows


def _model():
    torch.manual_seed(0)
    return tiny_model().double()


def _batch(model) -> tuple[Tensor, Tensor]:
    """(latents [2B, W, N, D], actions [2B, W-1, A]) in float64."""
    gen = torch.Generator().manual_seed(1)
    w, d = model.spec.window, model.encoder.embed_dim
    latents = torch.randn(WORLD * B, w, 16, d, generator=gen, dtype=torch.float64)
    actions = torch.rand(WORLD * B, w - 1, 2, generator=gen, dtype=torch.float64) * 2 - 1
    return latents, actions


def _loss(model, latents: Tensor, actions: Tensor, scope: str) -> tuple[Tensor, dict, list]:
    """(loss, terms, [grad of the latents, grads of the predictor])."""
    latents = latents.clone().requires_grad_(True)
    loss, terms = model(
        actions,
        latents=latents,
        rollout_steps=2,
        sigreg_weight=0.5,
        sigreg_generator=torch.Generator().manual_seed(7),  # alike on every rank
        reg_scope=scope,
    )
    loss.backward()
    grads = [p.grad.clone() for p in model.predictor.parameters() if p.grad is not None]
    return loss.detach(), terms, [latents.grad.clone(), *grads]


def _rank(rank: int, out: Path) -> None:
    """One gloo rank (train_utils.spawn_ranks): this rank's windows."""
    result = {}
    for scope in ("global", "local"):
        model = _model()
        latents, actions = _batch(model)
        mine = slice(rank * B, (rank + 1) * B)
        loss, terms, (g_latents, *grads) = _loss(model, latents[mine], actions[mine], scope)
        for g in grads:  # what DDP does to the parameters' gradients: the mean over ranks
            dist.all_reduce(g)
            g /= WORLD
        dist.all_reduce(loss)  # the loss of the global batch: the mean of the ranks' losses
        loss /= WORLD
        # the input of rank r gets WORLD x its share (DDP's mean divides it away downstream)
        result[scope] = (loss, terms["sigreg"], g_latents / WORLD, grads)
    torch.save(result, out / f"rank{rank}.pt")


def test_world_sigreg_on_two_ranks_equals_one_process(tmp_path: Path) -> None:
    spawn_ranks(_rank, WORLD, tmp_path)
    model = _model()
    latents, actions = _batch(model)
    loss, terms, (g_latents, *grads) = _loss(model, latents, actions, "global")
    assert grads and all(g.abs().max() > 1e-6 for g in grads)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        r_loss, r_sig, r_latents, r_grads = got["global"]
        assert abs(r_sig.item() - terms["sigreg"].item()) < 1e-6
        assert abs(r_loss.item() - loss.item()) < 1e-6
        want = g_latents[rank * B : (rank + 1) * B]
        assert want.abs().max() > 1e-4
        torch.testing.assert_close(r_latents, want, rtol=0, atol=1e-6)
        for g, w in zip(r_grads, grads, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
        # local: this rank's own statistic, which differs from the global one
        assert abs(got["local"][1].item() - terms["sigreg"].item()) > 1e-4


def test_world_reg_scope_is_a_config_key() -> None:
    assert load_config(None, [], command="world train").world.reg_scope == "global"
    cfg = load_config(None, ["world.reg_scope=local"], command="world train")
    assert cfg.world.reg_scope == "local"
    with pytest.raises(ConfigError, match="world.reg_scope"):
        load_config(None, ["world.reg_scope=everywhere"], command="world train")


@pytest.mark.slow
def test_world_train_runs_on_two_processes(tmp_path: Path) -> None:
    """`accelerate launch -m vjepa world train` (2 CPU processes, gloo), end to end with SIGReg:
    both ranks train (DDP), the main process alone writes world.json and val.json."""
    collect("vjepa/TwoRooms-v0", tmp_path / "traj", episodes=10, steps=16, progress=False)
    run_dir = tmp_path / "run"
    cmd = [
        str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu",
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "vjepa", "world", "train", "configs/world/tworooms_e2e.yaml",
        f"run.dir={run_dir}", f"data.shards={tmp_path / 'traj'}", "run.trackers=[]",
        "run.log_every=2", "data.batch_size=8", "model.name=tiny_cpu", "model.patch_size=8",
        "world.frame_size=32", "world.pool=1", "world.latent_dim=16",
        "world.encoder_trainable=true", "world.sigreg_weight=0.1", "world.window=3",
        "world.frameskip=1", "world.rollout_steps=1", "world.pred_width=32", "world.pred_depth=1",
        "world.pred_heads=2", "world.val_episodes=2", "world.hazard_steps=0",
        "train.max_steps=4", "train.checkpoint_every=4", "train.health_every=1000",
    ]  # fmt: skip
    env = run_env() | {"ACCELERATE_USE_CPU": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert rows[0]["event"] == "start" and rows[0]["world_size"] == 2
    assert [r["step"] for r in rows if "sigreg" in r] == [2, 4]
    assert (run_dir / "world.json").is_file() and (run_dir / "val.json").is_file()
    assert not list(run_dir.glob(".*.tmp"))
