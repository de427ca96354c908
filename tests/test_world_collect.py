"""`vjepa collect`: trajectory shards round trip, determinism, and bad trajectories skipped."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from vjepa.cli import main  # noqa: E402
from vjepa.config import DataConfig  # noqa: E402
from vjepa.data.writer import read_manifest  # noqa: E402
from vjepa.world.collect import collect  # noqa: E402
from vjepa.world.envs import TWO_ROOMS_ID, make_env, reset_to  # noqa: E402
from vjepa.world.trajectories import load_trajectories, npy_bytes  # noqa: E402


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("traj") / "a"
    collect(TWO_ROOMS_ID, out, episodes=3, steps=12, seed=5, max_count=2, progress=False)
    return out


def test_round_trip_frames_actions_states_exact(shards):
    manifest = read_manifest(shards)
    assert manifest["count"] == 3 and len(manifest["shards"]) == 2  # max_count=2 rolls over
    assert manifest["env"] == TWO_ROOMS_ID and manifest["skipped"] == []
    trajs, errors = load_trajectories(str(shards), DataConfig.decoder)
    assert errors.total == 0 and [t.key for t in trajs] == ["000000", "000001", "000002"]
    env = make_env(TWO_ROOMS_ID)
    for traj in trajs:
        assert traj.frames.shape == (12, 64, 64, 3) and traj.frames.dtype == np.uint8
        assert traj.actions.shape == (11, 2) and traj.actions.dtype == np.float32
        assert traj.states.shape == (12, 2)
        meta = traj.meta
        assert meta["num_frames"] == 12 and meta["state_dim"] == 2 and meta["seed"] == 5
        assert meta["action_low"] == [-1.0, -1.0] and meta["action_high"] == [1.0, 1.0]
        # Replaying the stored actions from the stored start reproduces every state and
        # every frame bit-exact: the mp4 is lossless and action t moves frame t to t+1.
        frame = reset_to(env, traj.states[0])
        np.testing.assert_array_equal(frame, traj.frames[0])
        for t, action in enumerate(traj.actions):
            env.step(action)
            np.testing.assert_allclose(env.unwrapped.get_state(), traj.states[t + 1], atol=1e-6)
            np.testing.assert_array_equal(env.render(), traj.frames[t + 1])
    # Persistence: most actions repeat the one before (repeat_prob 0.8), not all.
    a = np.concatenate([t.actions for t in trajs])
    repeats = np.mean(np.all(a[1:] == a[:-1], axis=1))
    assert 0.5 < repeats < 0.98


def test_deterministic_for_a_seed(shards, tmp_path):
    collect(TWO_ROOMS_ID, tmp_path / "b", episodes=3, steps=12, seed=5, max_count=2, progress=False)
    collect(TWO_ROOMS_ID, tmp_path / "c", episodes=3, steps=12, seed=6, max_count=2, progress=False)
    for name in ("shard-000000.tar", "shard-000001.tar", "manifest.json"):
        assert (tmp_path / "b" / name).read_bytes() == (shards / name).read_bytes()
    assert (tmp_path / "c" / "shard-000000.tar").read_bytes() != (
        shards / "shard-000000.tar"
    ).read_bytes()


def _rewrite(src, dst, edit):
    """Copy a shard, letting ``edit(name, data)`` drop (None) or change each member."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            data = edit(member.name, tin.extractfile(member).read())
            if data is not None:
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                tout.addfile(info, io.BytesIO(data))


def test_bad_trajectories_are_counted_and_the_rest_loads(shards, tmp_path):
    def edit(name, data):
        if name == "000000.actions.npy":
            return None  # missing actions
        if name == "000001.actions.npy":
            return npy_bytes(np.zeros((11, 3), np.float32))  # 3-D actions, bounds say 2-D
        return data

    bad = tmp_path / "bad"
    bad.mkdir()
    _rewrite(shards / "shard-000000.tar", bad / "shard-000000.tar", edit)
    _rewrite(shards / "shard-000001.tar", bad / "shard-000001.tar", lambda n, d: d)
    (bad / "shard-000002.tar").write_bytes(b"not a tar at all")
    trajs, errors = load_trajectories(str(bad), DataConfig.decoder)
    assert [t.key for t in trajs] == ["000002"]  # the good one still loads
    assert errors.counts["missing_actions"] == 1
    assert errors.counts["action_dim_mismatch"] == 1
    assert errors.counts["bad_shard"] == 1


def test_collect_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["collect", "vjepa/Reacher-v0", "--episodes", "2", "--steps", "5", "--out", str(out)]
    assert main(args + ["--seed", "1"]) == 0
    assert "wrote 2 samples" in capsys.readouterr().out
    trajs, _ = load_trajectories(str(out), DataConfig.decoder)
    assert [t.frames.shape[0] for t in trajs] == [5, 5]
    assert json.loads((out / "manifest.json").read_text())["steps"] == 5
    assert main(args[:-2] + ["--out", str(tmp_path / "x"), "--steps", "1"]) == 2  # bad argument
