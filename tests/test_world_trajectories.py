"""Trajectory shards read back for training (world/trajectories.py): bad samples counted and
skipped, seeded windows of latents or frames."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from trajectories import write_trajectory_shard

from vjepa.config import DataConfig
from vjepa.data.errors import DataError, DataErrors
from vjepa.world.trajectories import WindowSampler, gather_windows, read_trajectories

DECODER = DataConfig.decoder  # the project's default (auto), as `vjepa world train` reads


def test_missing_actions_are_counted_and_the_rest_loads(tmp_path: Path, caplog) -> None:
    shard = write_trajectory_shard(tmp_path / "t-000000.tar", episodes=4, drop_actions=(1,))
    errors = DataErrors()
    with caplog.at_level(logging.WARNING, logger="vjepa.data"):
        trajs = read_trajectories(str(shard), decoder=DECODER, errors=errors)
    assert [t.key for t in trajs] == ["00000000", "00000002", "00000003"]
    assert errors.as_dict() == {"missing_actions": 1}
    assert "00000001" in caplog.text and "missing_actions" in caplog.text
    assert trajs[0].frames.shape == (12, 32, 32, 3) and trajs[0].actions.shape == (11, 2)
    bad = write_trajectory_shard(tmp_path / "b-000000.tar", episodes=2, drop_actions=(0, 1))
    with pytest.raises(DataError, match="missing_actions"):
        read_trajectories(str(bad), decoder=DECODER)


def test_windows_are_a_pure_function_of_seed_and_batch(tmp_path: Path) -> None:
    shard = write_trajectory_shard(tmp_path / "t-000000.tar", episodes=3)
    trajs = read_trajectories(str(shard), decoder=DECODER)
    sampler = WindowSampler([len(t.frames) for t in trajs], span=7, seed=3)
    a, b = sampler.sample(5, 16), sampler.sample(5, 16)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[1].max() <= 12 - 7
    lat = [torch.arange(12.0).view(12, 1, 1).expand(12, 2, 3) for _ in trajs]
    win = gather_windows(lat, trajs, a[0], a[1], window=4, frameskip=2)  # latents
    assert win["latents"].shape == (16, 4, 2, 3) and win["actions"].shape == (16, 3, 4)
    # frames t0, t0+2, t0+4, t0+6; the actions of a model step are 2 env actions.
    torch.testing.assert_close(
        win["latents"][:, :, 0, 0], torch.tensor(a[1])[:, None] + 2.0 * torch.arange(4)
    )
    i, t0 = int(a[0][0]), int(a[1][0])
    np.testing.assert_array_equal(
        win["actions"][0, 1].numpy(), trajs[i].actions[t0 + 2 : t0 + 4].reshape(-1)
    )
    frames = [torch.from_numpy(t.frames) for t in trajs]  # [T, H, W, 3] uint8 each
    fwin = gather_windows(frames, trajs, a[0], a[1], window=4, frameskip=2, key="frames")
    assert set(fwin) == {"frames", "actions", "states"} and fwin["frames"].dtype == torch.uint8
    assert fwin["frames"].shape == (16, 4, 32, 32, 3)
