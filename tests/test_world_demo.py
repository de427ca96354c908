"""`vjepa demo world`: the whole chain (collect -> pretrain -> world train -> plan), quick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vjepa.cli import main
from vjepa.demo.world import sizes_for


def test_demo_sizes_follow_the_env() -> None:
    two = sizes_for("vjepa/TwoRooms-v0")
    assert (two.frame_size, two.patch_size, two.pool, two.action_dim) == (32, 8, 1, 2)
    reacher = sizes_for("vjepa/Reacher-v0")
    assert reacher.frame_size % reacher.patch_size == 0
    assert (reacher.frame_size // reacher.patch_size) // reacher.pool == 4


@pytest.mark.slow
def test_quick_world_demo_runs_the_chain_and_writes_the_report(tmp_path: Path, capsys) -> None:
    import vjepa

    out = tmp_path / "demo"
    assert main(["demo", "world", "--quick", "--out", str(out)]) == 0
    report = json.loads((out / "plan" / "report.json").read_text())
    for key in (
        "success_rate",
        "random_success_rate",
        "random_model_success_rate",
        "oracle_success_rate",
        "mean_final_distance",
        "seconds_per_action",
    ):
        assert key in report, key
    assert report["episodes"] == 2
    assert (out / "trajectories" / "manifest.json").is_file()
    assert (out / "encoder" / "checkpoints").is_dir() and (out / "world" / "world.json").is_file()
    wm = vjepa.load_world_model(out / "world")
    # The end-to-end model, its encoder started from the pretrained one, at 32 px.
    assert wm.action_dim == 2 and wm.frameskip == 5 and wm.spec.latent_dim == 64
    assert wm.frame_size == 32 and wm.spec.encoder_source == str(out / "encoder")
    printed = capsys.readouterr().out
    assert "random_model" in printed and "oracle" in printed


def test_demo_bad_override_fails_before_any_work(tmp_path: Path, capsys) -> None:
    rc = main(["demo", "world", "--out", str(tmp_path / "d"), "world.windw=3"])
    assert rc == 2 and "world.window" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_no_pretrain_starts_world_training_from_the_seeded_random_init(tmp_path: Path) -> None:
    import torch

    from vjepa.artifacts.encoder import random_encoder
    from vjepa.demo.world import stage_configs
    from vjepa.models.encoder import model_arch
    from vjepa.world.train import build_encoder

    s = sizes_for("vjepa/TwoRooms-v0")
    kw = dict(env="vjepa/TwoRooms-v0", train_seed=1, trajectories=tmp_path / "t")
    pre, world, _, _ = stage_configs(tmp_path, s, **kw)
    assert world.world.encoder == str(tmp_path / "encoder")  # the chain's pretrained encoder
    pre, world, _, collect_seed = stage_configs(tmp_path, s, pretrained=False, **kw)
    assert world.world.encoder == "random" and world.run.seed == 1 and collect_seed == 0
    enc = build_encoder(world)
    # The pretraining's architecture (num_frames aside: RoPE has no table it sizes) ...
    want = model_arch(pre.model, num_frames=pre.model.tubelet_size, img_size=s.frame_size)
    assert enc.config["architecture"] == want
    # ... at the init of the training seed, not another seed's.
    same = random_encoder(want, 1).state_dict()
    other = random_encoder(want, 0).state_dict()
    got = enc.state_dict()
    assert all(torch.equal(got[k], same[k]) for k in same)
    assert not all(torch.equal(got[k], other[k]) for k in other)


def test_no_pretrain_refuses_a_world_encoder_and_plain_demo(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "d")
    rc = main(["demo", "world", "--no-pretrain", "--out", out, "world.encoder=random"])
    assert rc == 2 and "world.encoder" in capsys.readouterr().err
    rc = main(["demo", "world", "--no-pretrain", "--out", out, "pretrain.model.centre_input=true"])
    assert rc == 2 and "centre_input" in capsys.readouterr().err
    assert main(["demo", "--no-pretrain", "--out", out]) == 2
    assert "demo world" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_quick_world_demo_without_pretraining(tmp_path: Path) -> None:
    import vjepa

    out = tmp_path / "demo"
    args = ["demo", "world", "--quick", "--no-pretrain", "--out", str(out), "plan.baselines=[]"]
    assert main(args) == 0
    assert not (out / "encoder").exists()  # nothing pretrained
    wm = vjepa.load_world_model(out / "world")
    assert wm.spec.encoder_source == "random" and wm.frame_size == 32
    assert json.loads((out / "plan" / "report.json").read_text())["episodes"] == 2
