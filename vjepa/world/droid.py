"""DROID-style robot trajectories -> trajectory shards (the data V-JEPA 2-AC trains on).

The layout of a DROID (R2D2) trajectory folder, as the dataset publishes it::

    <trajectory>/
      metadata_<uuid>.json     {"wrist_mp4_path": ".../recordings/MP4/<serial>.mp4",
                                "ext1_mp4_path": ..., "ext2_mp4_path": ...,
                                "left_mp4_path": ..., "right_mp4_path": ..., ...}
      trajectory.h5            observation/robot_state/cartesian_position [T, 6]
                               (x, y, z, then Euler "xyz" angles in radians),
                               observation/robot_state/gripper_position [T] (0 open .. 1 closed),
                               and more (joints, camera extrinsics, timestamps) that we ignore
      recordings/MP4/<serial>.mp4   one video per camera (15 Hz, like the control loop)

The state is the 7-D end-effector pose ``[x, y, z, roll, pitch, yaw, gripper]``; the action
from step t to t+1 is the pose delta, as V-JEPA 2-AC defines it: the position difference,
the rotation ``R_{t+1} R_t^T`` as Euler "xyz" angles, and the gripper difference.

:func:`droid_to_shards` converts a folder tree of trajectories into our trajectory shards
(``<key>.mp4`` + ``actions.npy`` [T-1, 7] + ``states.npy`` [T, 7] + ``json``), keeping every
``frame_step``-th step and resizing the camera to ``short_side``. A trajectory that cannot be
read (no pose arrays, no video for the camera, an undecodable video) is skipped and listed in
the manifest with its reason; the rest converts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vjepa.data.decode import DecodeError, open_video
from vjepa.data.encode import encode_frames
from vjepa.data.formats import SkippedInput
from vjepa.data.writer import write_sample_shards
from vjepa.errors import UsageError
from vjepa.train.faults import hold_run_folder
from vjepa.world.trajectories import TRAJECTORY_FORMAT, TrajectoryError, npy_bytes

log = logging.getLogger(__name__)

H5_NAME = "trajectory.h5"
POSITION_KEY = "observation/robot_state/cartesian_position"
GRIPPER_KEY = "observation/robot_state/gripper_position"
CAMERAS = ("wrist", "ext1", "ext2", "left", "right")
DROID_FPS = 15.0


@dataclass
class DroidTrajectory:
    """frames uint8 [T, H, W, 3], states float32 [T, 7] poses, actions float32 [T-1, 7]."""

    folder: Path
    camera: str
    frames: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    fps: float
    meta: dict


# ----------------------------------------------------------------------------------------
# Poses -> actions
# ----------------------------------------------------------------------------------------


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """Euler "xyz" angles [N, 3] (extrinsic x, then y, then z) -> rotations [N, 3, 3]."""
    a, b, c = (np.asarray(angles, dtype=np.float64)[:, i] for i in range(3))
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    # R = Rz(c) @ Ry(b) @ Rx(a)
    return np.stack(
        [
            np.stack([cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa], -1),
            np.stack([sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa], -1),
            np.stack([-sb, cb * sa, cb * ca], -1),
        ],
        axis=1,
    )


def matrix_to_euler(rot: np.ndarray) -> np.ndarray:
    """Rotations [N, 3, 3] -> Euler "xyz" angles [N, 3] (the inverse of euler_to_matrix)."""
    roll = np.arctan2(rot[:, 2, 1], rot[:, 2, 2])
    pitch = np.arcsin(np.clip(-rot[:, 2, 0], -1.0, 1.0))
    yaw = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
    return np.stack([roll, pitch, yaw], axis=1)


def poses_to_actions(states: np.ndarray) -> np.ndarray:
    """Pose deltas [T-1, 7] of poses [T, 7]: d(xyz), R_{t+1} R_t^T as Euler xyz, d(gripper)."""
    states = np.asarray(states, dtype=np.float64)
    rot = euler_to_matrix(states[:, 3:6])  # [T, 3, 3]
    delta_rot = rot[1:] @ np.transpose(rot[:-1], (0, 2, 1))  # [T-1, 3, 3]
    return np.concatenate(
        [
            states[1:, :3] - states[:-1, :3],
            matrix_to_euler(delta_rot),
            states[1:, 6:7] - states[:-1, 6:7],
        ],
        axis=1,
    ).astype(np.float32)


# ----------------------------------------------------------------------------------------
# One trajectory folder
# ----------------------------------------------------------------------------------------


def _metadata(folder: Path) -> dict:
    files = sorted(folder.glob("metadata*.json"))
    if not files:
        return {}
    try:
        return json.loads(files[0].read_text())
    except (ValueError, OSError) as err:
        raise TrajectoryError("bad_metadata", f"{files[0]}: {err}") from None


def camera_video(folder: Path, camera: str, meta: dict) -> Path:
    """The MP4 of ``camera`` (a name in CAMERAS via the metadata, or a camera serial)."""
    mp4_dir = folder / "recordings" / "MP4"
    if camera in CAMERAS:
        rel = meta.get(f"{camera}_mp4_path")
        if not rel:
            raise TrajectoryError(
                "missing_video", f"{folder}: no {camera}_mp4_path in the metadata json"
            )
        path = mp4_dir / Path(rel).name  # metadata paths are relative to the lab folder
    else:
        path = mp4_dir / f"{camera}.mp4"
    if not path.is_file():
        raise TrajectoryError("missing_video", f"{folder}: camera {camera} video {path} not found")
    return path


def _poses(folder: Path) -> np.ndarray:
    """[T, 7] poses from trajectory.h5; TrajectoryError naming a missing array."""
    import h5py

    path = folder / H5_NAME
    try:
        with h5py.File(path, "r") as h5:
            for key in (POSITION_KEY, GRIPPER_KEY):
                if key not in h5:
                    raise TrajectoryError(
                        "missing_actions", f"{path}: no {key}: no poses, no actions"
                    )
            pos = np.asarray(h5[POSITION_KEY], dtype=np.float64)
            grip = np.asarray(h5[GRIPPER_KEY], dtype=np.float64).reshape(-1, 1)
    except OSError as err:
        raise TrajectoryError("bad_h5", f"{path}: {err}") from None
    if pos.ndim != 2 or pos.shape[1] != 6 or grip.shape[0] != pos.shape[0]:
        raise TrajectoryError(
            "bad_poses",
            f"{path}: cartesian_position {list(pos.shape)} (want [T, 6]) and "
            f"gripper_position {grip.shape[0]} rows",
        )
    return np.concatenate([pos, grip], axis=1)


def _resize(frames: np.ndarray, short_side: int | None) -> np.ndarray:
    """Frames [T, H, W, 3] with the short side at ``short_side`` (antialiased; even sides)."""
    if short_side is None:
        return frames
    t, h, w, _ = frames.shape
    scale = short_side / min(h, w)
    nh, nw = max(2, round(h * scale) // 2 * 2), max(2, round(w * scale) // 2 * 2)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()  # [T, nh, nw, 3]


def read_droid_trajectory(
    folder: str | Path,
    *,
    camera: str = "ext1",
    frame_step: int = 1,
    short_side: int | None = None,
    decoder: str = "pyav",
) -> DroidTrajectory:
    """One trajectory folder: frames of ``camera``, poses and pose-delta actions.

    Video frames and pose rows are paired by index (DROID records both at 15 Hz); when their
    counts differ the longer one is cut and the difference is kept in ``meta``.
    """
    if frame_step < 1:
        raise UsageError(f"frame_step must be >= 1, got {frame_step}")
    folder = Path(folder)
    if not (folder / H5_NAME).is_file():
        raise TrajectoryError("missing_h5", f"{folder}: no {H5_NAME}")
    meta = _metadata(folder)
    poses = _poses(folder)
    video = camera_video(folder, camera, meta)
    try:
        with open_video(video.read_bytes(), decoder) as reader:
            n = min(reader.num_frames, poses.shape[0])
            idx = list(range(0, n, frame_step))
            frames = reader.get_frames(idx)  # [T, H, W, 3]
            fps = (reader.fps or DROID_FPS) / frame_step
            num_video = reader.num_frames
    except DecodeError as err:
        raise TrajectoryError(err.reason, f"{video}: {err}") from None
    if len(idx) < 2:
        raise TrajectoryError("too_short", f"{folder}: {len(idx)} steps after frame_step")
    states = poses[idx].astype(np.float32)  # [T, 7]
    info = {
        "uuid": meta.get("uuid"),
        "task": meta.get("current_task"),
        "camera": camera,
        "video_frames": num_video,
        "pose_rows": int(poses.shape[0]),
        "frame_step": frame_step,
    }
    return DroidTrajectory(
        folder, camera, _resize(frames, short_side), states, poses_to_actions(poses[idx]), fps, info
    )


# ----------------------------------------------------------------------------------------
# A tree of trajectories -> shards
# ----------------------------------------------------------------------------------------


def find_trajectories(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (itself included) that holds a trajectory.h5, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DROID root {root} is not a folder")
    return sorted(p.parent for p in root.rglob(H5_NAME))


def droid_to_shards(
    root: str | Path,
    out: str | Path,
    *,
    camera: str = "ext1",
    frame_step: int = 1,
    short_side: int | None = 256,
    max_count: int = 100,
) -> dict:
    """Convert every trajectory under ``root`` into trajectory shards; returns the manifest."""
    root = Path(root)
    folders = find_trajectories(root)
    skipped: list[SkippedInput] = []

    def samples():
        for i, folder in enumerate(folders):
            source = folder.relative_to(root).as_posix() or "."
            try:
                traj = read_droid_trajectory(
                    folder, camera=camera, frame_step=frame_step, short_side=short_side
                )
            except TrajectoryError as err:
                skipped.append(SkippedInput(source, err.reason, str(err)))
                log.warning("skipping DROID trajectory %s: %s", source, err)
                continue
            t, h, w, _ = traj.frames.shape
            meta = {
                "source": source,
                "label": None,
                "label_name": None,
                "env": "droid",
                "seed": None,
                "episode": i,
                "fps": traj.fps,
                "num_frames": t,
                "width": w,
                "height": h,
                "duration": t / traj.fps,
                "action_low": None,
                "action_high": None,
                "state_dim": 7,
                **traj.meta,
            }
            video = encode_frames(
                traj.frames,
                fps=traj.fps,
                options={"crf": "18", "preset": "veryfast", "threads": "1"},
                container_options={"fflags": "+bitexact"},
            )
            extra = {"actions.npy": npy_bytes(traj.actions), "states.npy": npy_bytes(traj.states)}
            yield f"{i:06d}", video, meta, extra

    info = {"env": "droid", "camera": camera, "frame_step": frame_step}
    info |= {"trajectory_format": TRAJECTORY_FORMAT, "action_dim": 7}
    with hold_run_folder(out):  # one conversion per folder
        return write_sample_shards(
            samples(),
            out,
            num_inputs=len(folders),
            max_count=max_count,
            skipped=skipped,
            extra_manifest=info,
        )
