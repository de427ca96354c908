"""Our training checkpoints: atomic save, find the latest complete one, load.

Layout of a run folder::

    <run.dir>/checkpoints/
        step-00001000/
            encoder.safetensors          context encoder state dict
            predictor.safetensors        predictor state dict
            target_encoder.safetensors   EMA target encoder state dict (the one to export)
            train_state.pt               torch.save of plain data: step, optimizer state,
                                         RNG states, data position, counters, config dict
            config.yaml                  the resolved config (for humans and load_encoder)
            COMPLETE                     written last: the folder is valid only with it
        .tmp-step-00002000/              a save in progress (or killed): never "latest"

Atomicity: everything is written into ``.tmp-step-XXXXXXXX/``, each file is fsync'ed, the
``COMPLETE`` marker is written last, the folder is fsync'ed and then renamed (an atomic
operation on POSIX) to ``step-XXXXXXXX/``. A reader therefore sees either no folder or a
complete one; :func:`latest_checkpoint` also requires the marker, so a folder made any other
way is ignored. Older checkpoints beyond ``keep_last`` are deleted only after the new one is
complete.

``train_state.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no pickle code execution from a downloaded checkpoint).
Model weights are safetensors so ``vjepa.load_encoder`` (and anything else) can read the target
encoder without torch.load at all.

We use our own format rather than ``accelerator.save_state`` because the latter pickles
arbitrary objects, is not atomic and writes opaque ``model_0.safetensors`` names.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

WEIGHT_KEYS = ("encoder", "predictor", "target_encoder")
"""Top-level ``state`` entries stored as ``<key>.safetensors`` (state dicts of tensors)."""
TRAIN_STATE = "train_state.pt"
CONFIG_FILE = "config.yaml"
MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


class CheckpointError(FileNotFoundError):
    """A checkpoint path that does not exist or is not a complete checkpoint of ours."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # A directory fsync makes the entries (new files, a rename) durable.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _plain_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no shared storage (safetensors refuses aliasing)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _write_folder(folder: Path, step: int, state: dict[str, Any]) -> None:
    """Write every file of a checkpoint into ``folder`` (fsync'ed), the marker last."""
    folder.mkdir(parents=True)
    rest = {k: v for k, v in state.items() if k not in WEIGHT_KEYS}
    for key in WEIGHT_KEYS:
        if key in state:
            path = folder / f"{key}.safetensors"
            save_file(_plain_tensors(state[key]), str(path), metadata={"step": str(step)})
            _fsync_file(path)
    rest["step"] = step
    with open(folder / TRAIN_STATE, "wb") as f:
        torch.save(rest, f)
        f.flush()
        os.fsync(f.fileno())
    if isinstance(rest.get("config"), dict):
        with open(folder / CONFIG_FILE, "w") as f:
            yaml.safe_dump(rest["config"], f, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
    with open(folder / MARKER, "w") as f:
        f.write(f"{step}\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(folder)


def save_checkpoint(
    run_dir: str | Path, step: int, *, state: dict[str, Any], keep_last: int
) -> Path:
    """Atomically save ``state`` as ``<run_dir>/checkpoints/step-<step>/``; returns that folder.

    ``state`` maps ``encoder`` / ``predictor`` / ``target_encoder`` to state dicts (written as
    safetensors); every other entry (tensors, numbers, strings, lists, dicts) goes into
    ``train_state.pt``, and a ``config`` dict is also written as ``config.yaml``. Call it on
    one process only (the main one).
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left over by a killed save: never valid
        shutil.rmtree(stale)
    tmp = root / f".tmp-{_step_name(step)}"
    final = root / _step_name(step)
    _write_folder(tmp, step, state)
    if final.exists():  # re-saving a step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    _prune(root, keep_last)
    return final


def is_complete(folder: str | Path) -> bool:
    """True when ``folder`` is a step folder with the ``COMPLETE`` marker."""
    folder = Path(folder)
    return bool(_STEP_DIR.match(folder.name)) and (folder / MARKER).is_file()


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None (temp / unmarked folders ignored)."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _prune(root: Path, keep_last: int) -> None:
    complete = list_checkpoints(root.parent)
    for old in complete[: max(len(complete) - keep_last, 0)]:
        shutil.rmtree(old)


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint folder (or a run folder: its latest) back into the ``state`` dict shape.

    Returns the weight state dicts under ``encoder`` / ``predictor`` / ``target_encoder`` plus
    every entry of ``train_state.pt`` (``step``, ``optimizer``, ``rng``, ``data``, ...).
    """
    path = Path(path)
    if not is_complete(path):
        latest = latest_checkpoint(path) if path.is_dir() else None
        if latest is None:
            raise CheckpointError(f"{path}: not a complete vjepa checkpoint (no {MARKER} marker)")
        path = latest
    state: dict[str, Any] = torch.load(
        path / TRAIN_STATE, map_location=map_location, weights_only=True
    )
    device = str(map_location)
    for key in WEIGHT_KEYS:
        file = path / f"{key}.safetensors"
        if file.is_file():
            state[key] = load_file(str(file), device=device)
    return state
