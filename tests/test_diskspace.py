"""A full disk at checkpoint: a real 2 MiB tmpfs (as root), else an injected ENOSPC."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import vjepa.train.checkpoint as checkpoint
from vjepa.errors import UsageError
from vjepa.train.checkpoint import (
    checkpoint_dir,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from vjepa.train.diskspace import DiskFullError, checkpoint_space, free_bytes, state_nbytes


def _state(rows: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    w = {"w": torch.randn(rows, 1024, generator=gen)}  # rows x 4 KiB
    return {"encoder": w, "predictor": w, "target_encoder": w, "config": {"seed": seed}}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _save(run: Path, step: int, state: dict, needed: int | None = None) -> Path:
    folder = checkpoint_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    with checkpoint_space(folder, state_nbytes(state) if needed is None else needed):
        return save_checkpoint(run, step, state=state, keep_last=1)


def _intact(run: Path, state: dict) -> None:
    latest = latest_checkpoint(run)
    assert latest is not None and latest.name == "step-00000001"
    loaded = load_checkpoint(latest)
    assert loaded["step"] == 1 and torch.equal(loaded["encoder"]["w"], state["encoder"]["w"])
    assert not list(checkpoint_dir(run).glob(".tmp-*"))  # the partial save is gone


def test_a_state_too_big_for_the_disk_fails_before_writing(small_disk: Path) -> None:
    run = small_disk / "run"
    first = _state(64, seed=1)  # 3 x 256 KiB
    _save(run, 1, first)
    with pytest.raises(DiskFullError) as info:
        _save(run, 2, _state(256, seed=2))  # 3 x 1 MiB > 2 MiB
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, UsageError)
    assert str(checkpoint_dir(run)) in message and "needs about 3.0 MiB" in message
    _intact(run, first)


def test_enospc_during_the_write_leaves_the_previous_checkpoint(small_disk: Path) -> None:
    run = small_disk / "run"
    first = _state(64, seed=1)
    _save(run, 1, first)
    before = free_bytes(small_disk)
    big = _state(160, seed=2)  # 3 x 640 KiB: fits no more than twice in what is left
    # An estimate that lets the write start: the real tmpfs then fills up mid-write
    # (safetensors: "No space left on device (os error 28)").
    with pytest.raises(DiskFullError, match="no space left for a checkpoint in .*needs about"):
        _save(run, 2, big, needed=1)
    _intact(run, first)
    assert free_bytes(small_disk) == before  # the partial files were removed


def test_injected_enospc_is_one_line(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    first = _state(4, seed=1)
    _save(run, 1, first)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", no_space)
    with pytest.raises(DiskFullError, match="needs about 0.0 MiB"):
        _save(run, 2, _state(4, seed=2))
    _intact(run, first)


def test_other_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        with checkpoint_space(tmp_path, 10):
            raise KeyError("not a disk problem")
