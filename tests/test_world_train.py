"""`vjepa world train`: the shared loop trains the predictor, checkpoints and resumes exactly."""

from __future__ import annotations

from pathlib import Path

import torch
from trajectories import write_trajectory_shard

from vjepa.cli import main
from vjepa.config import load_config
from vjepa.train.checkpoint import latest_checkpoint, load_checkpoint
from vjepa.train.metrics import read_metrics


def _overrides(run_dir: Path, shards: Path, steps: int) -> list[str]:
    return [
        f"run.dir={run_dir}",
        f"data.shards={shards}",
        "run.trackers=[]",
        "run.log_every=1",
        "data.batch_size=8",
        "model.name=tiny_cpu",
        "model.patch_size=8",
        "world.frame_size=32",
        "world.pool=2",
        "world.window=3",
        "world.frameskip=2",
        "world.rollout_steps=2",
        "world.pred_width=32",
        "world.pred_depth=1",
        "world.pred_heads=2",
        "world.val_episodes=1",
        f"train.max_steps={steps}",
        "train.checkpoint_every=3",
        "train.health_every=1000",
        "optim.lr=0.003",
        "optim.start_lr=0.003",
        "optim.final_lr=0.003",  # constant schedules: a 3-step run is a 6-step run's first half
        "optim.weight_decay=0.0",
        "optim.final_weight_decay=0.0",
        "optim.warmup_steps=0",
    ]


def test_world_train_resume_equals_uninterrupted_and_loads_back(tmp_path: Path) -> None:
    import vjepa

    shards = write_trajectory_shard(tmp_path / "traj" / "t-000000.tar", episodes=4, steps=10)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert (
        main(["world", "train", "configs/world/tworooms.yaml", *_overrides(straight, shards, 6)])
        == 0
    )
    from vjepa.world.train import world_train

    world_train(load_config("configs/world/tworooms.yaml", _overrides(resumed, shards, 3)))
    world_train(load_config("configs/world/tworooms.yaml", _overrides(resumed, shards, 6)))
    rows = [r for r in read_metrics(straight / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"teacher_forcing", "rollout"} <= set(rows[-1])
    events = [r.get("event") for r in read_metrics(resumed / "metrics.jsonl")]
    assert events.count("resume") == 1
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["counters"]["step"] == b["counters"]["step"] == 6
    for key in a["predictor"]:
        torch.testing.assert_close(b["predictor"][key], a["predictor"][key], rtol=0, atol=1e-6)
    # The frozen encoder did not move.
    first = load_checkpoint(sorted((straight / "checkpoints").iterdir())[0])
    for key in a["encoder"]:
        assert torch.equal(first["encoder"][key], a["encoder"][key])
    assert (straight / "loss.png").is_file() and (straight / "val.json").is_file()
    wm = vjepa.load_world_model(straight)
    assert wm.action_dim == 2 and wm.frameskip == 2 and wm.frame_size == 32
    wm2 = vjepa.load_world_model(latest_checkpoint(straight))
    frames = torch.randint(0, 255, (1, 1, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        z = wm.encode(frames)
        torch.testing.assert_close(
            wm2.rollout(z, torch.ones(1, 4, 2)), wm.rollout(z, torch.ones(1, 4, 2))
        )


def test_world_train_bad_key_and_bad_shards_are_user_errors(tmp_path: Path, capsys) -> None:
    rc = main(["world", "train", "configs/world/tworooms.yaml", "world.windw=3"])
    assert rc == 2 and "world.window" in capsys.readouterr().err
    rc = main(
        [
            "world",
            "train",
            "configs/world/tworooms.yaml",
            f"run.dir={tmp_path / 'run'}",
            f"data.shards={tmp_path / 'nothing'}",
        ]
    )
    assert rc == 2 and not (tmp_path / "run").exists()
