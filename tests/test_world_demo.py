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
