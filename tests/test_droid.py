"""The DROID-style reader on small trajectory folders in DROID's layout (h5py + PyAV)."""

from __future__ import annotations

import json

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from videos import make_mp4  # noqa: E402

from vjepa.cli import main  # noqa: E402
from vjepa.config import DataConfig  # noqa: E402
from vjepa.world.droid import (  # noqa: E402
    droid_to_shards,
    euler_to_matrix,
    matrix_to_euler,
    poses_to_actions,
    read_droid_trajectory,
)
from vjepa.world.trajectories import load_trajectories  # noqa: E402

T = 12
WRIST, EXT1, EXT2 = "13062452", "22008760", "24400334"


def _poses(t: int = T) -> np.ndarray:
    """[T, 7]: a known path: +1 cm in x per step, yaw +0.1 rad per step, gripper closing."""
    steps = np.arange(t, dtype=np.float64)
    xyz = np.stack([0.4 + 0.01 * steps, 0.05 * np.ones(t), 0.3 - 0.002 * steps], 1)
    euler = np.stack([np.pi * np.ones(t), 0.2 * np.ones(t), 0.1 * steps - 0.5], 1)
    grip = (steps / (t - 1))[:, None]
    return np.concatenate([xyz, euler, grip], 1)


def make_droid_trajectory(folder, *, poses=None, with_gripper=True, cameras=(WRIST, EXT1, EXT2)):
    """A trajectory folder as DROID publishes it: metadata json, trajectory.h5, MP4 per camera."""
    poses = _poses() if poses is None else poses
    folder.mkdir(parents=True)
    rel = "success/2023-07-07/Fri_Jul__7_09:50:13_2023/recordings/MP4"
    meta = {
        "uuid": "LAB+abcd1234+2023-07-07-09h-50m-13s",
        "current_task": "move the cup",
        "trajectory_length": len(poses),
        "wrist_cam_serial": WRIST,
        "ext1_cam_serial": EXT1,
        "ext2_cam_serial": EXT2,
        "wrist_mp4_path": f"{rel}/{WRIST}.mp4",
        "ext1_mp4_path": f"{rel}/{EXT1}.mp4",
        "ext2_mp4_path": f"{rel}/{EXT2}.mp4",
        "left_mp4_path": f"{rel}/{EXT1}.mp4",
        "right_mp4_path": f"{rel}/{EXT2}.mp4",
    }
    (folder / f"metadata_{meta['uuid']}.json").write_text(json.dumps(meta))
    with h5py.File(folder / "trajectory.h5", "w") as h5:
        state = h5.create_group("observation/robot_state")
        state["cartesian_position"] = poses[:, :6]
        if with_gripper:
            state["gripper_position"] = poses[:, 6]
        state["joint_positions"] = np.zeros((len(poses), 7))
        for serial in (WRIST, EXT1, EXT2):
            h5[f"observation/camera_extrinsics/{serial}_left"] = np.zeros((len(poses), 6))
        h5["action/cartesian_position"] = poses[:, :6]
    for k, serial in enumerate(cameras):
        make_mp4(
            folder / "recordings" / "MP4" / f"{serial}.mp4",
            num_frames=T,
            size=(64, 48),
            fps=15,
            seed=k,
        )
    return folder


def test_euler_round_trip_matches_rotation_composition():
    rng = np.random.default_rng(0)
    angles = rng.uniform([-3, -1.4, -3], [3, 1.4, 3], (50, 3))
    rot = euler_to_matrix(angles)
    np.testing.assert_allclose(
        rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12
    )
    np.testing.assert_allclose(matrix_to_euler(rot), angles, atol=1e-9)
    # Extrinsic "xyz": a pure yaw is a rotation about z, mapping x onto y.
    np.testing.assert_allclose(
        euler_to_matrix(np.array([[0, 0, np.pi / 2]]))[0] @ [1, 0, 0], [0, 1, 0], atol=1e-12
    )


def test_pose_deltas():
    actions = poses_to_actions(_poses())
    assert actions.shape == (T - 1, 7) and actions.dtype == np.float32
    np.testing.assert_allclose(actions[:, 0], 0.01, atol=1e-6)
    np.testing.assert_allclose(actions[:, 2], -0.002, atol=1e-6)
    # The rotation delta R_{t+1} R_t^T of a constant roll / pitch and a yaw ramp is the yaw step.
    np.testing.assert_allclose(actions[:, 3:6], np.tile([0, 0, 0.1], (T - 1, 1)), atol=1e-6)
    np.testing.assert_allclose(actions[:, 6], 1 / (T - 1), atol=1e-6)


def test_read_droid_trajectory(tmp_path):
    folder = make_droid_trajectory(tmp_path / "success" / "traj0")
    traj = read_droid_trajectory(folder, camera="ext1")
    assert traj.frames.shape == (T, 48, 64, 3)
    np.testing.assert_allclose(traj.states, _poses().astype(np.float32))
    np.testing.assert_allclose(traj.actions, poses_to_actions(_poses()))
    # The camera comes from the metadata: ext1 is the serial-22008760 video (seed 1), not wrist.
    wrist = read_droid_trajectory(folder, camera="wrist").frames
    by_serial = read_droid_trajectory(folder, camera=EXT1).frames
    np.testing.assert_array_equal(by_serial, traj.frames)
    assert np.abs(wrist.astype(int) - traj.frames.astype(int)).mean() > 5
    strided = read_droid_trajectory(folder, camera="ext1", frame_step=3)
    assert strided.frames.shape[0] == 4 and strided.actions.shape == (3, 7)
    np.testing.assert_allclose(strided.actions[:, 0], 0.03, atol=1e-6)
    assert strided.fps == pytest.approx(5.0)


def test_droid_to_shards_skips_bad_trajectories(tmp_path):
    root = tmp_path / "droid"
    make_droid_trajectory(root / "success" / "a")
    make_droid_trajectory(root / "success" / "b", with_gripper=False)  # no gripper: no actions
    make_droid_trajectory(root / "success" / "c", cameras=(WRIST,))  # no ext1 video
    make_droid_trajectory(root / "success" / "d")
    manifest = droid_to_shards(root, tmp_path / "shards", camera="ext1", short_side=32)
    assert manifest["count"] == 2 and manifest["num_inputs"] == 4
    reasons = {s["source"]: s["reason"] for s in manifest["skipped"]}
    assert reasons == {"success/b": "missing_actions", "success/c": "missing_video"}
    assert "gripper_position" in manifest["skipped"][0]["detail"]
    trajs, errors = load_trajectories(str(tmp_path / "shards"), DataConfig.decoder)
    assert errors.total == 0 and len(trajs) == 2
    assert trajs[0].frames.shape == (T, 32, 42, 3)  # short side 32, even width
    assert trajs[0].actions.shape == (T - 1, 7) and trajs[0].states.shape == (T, 7)
    np.testing.assert_allclose(trajs[1].actions, poses_to_actions(_poses()), atol=1e-6)
    assert trajs[0].meta["source"] == "success/a" and trajs[0].meta["camera"] == "ext1"


def test_droid_cli(tmp_path, capsys):
    make_droid_trajectory(tmp_path / "droid" / "x")
    out = tmp_path / "out"
    assert (
        main(
            [
                "collect",
                "droid",
                "--root",
                str(tmp_path / "droid"),
                "--out",
                str(out),
                "--frame-step",
                "2",
            ]
        )
        == 0
    )
    assert "wrote 1 samples" in capsys.readouterr().out
    trajs, _ = load_trajectories(str(out), DataConfig.decoder)
    assert trajs[0].frames.shape[0] == T // 2
    assert main(["collect", "droid", "--out", str(out)]) == 2  # --root is required for droid
