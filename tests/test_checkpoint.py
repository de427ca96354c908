"""Atomic checkpoints: round trip, weights_only loading, keep_last, half-written folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vjepa.train.checkpoint import (
    MARKER,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def _state(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    enc = {
        "blocks.0.weight": torch.randn(4, 4, generator=g),
        "norm.bias": torch.randn(4, generator=g),
    }
    return {
        "encoder": enc,
        "predictor": {"proj.weight": torch.randn(3, 2, generator=g)},
        "target_encoder": {k: v * 2 for k, v in enc.items()},
        "optimizer": {
            "state": {0: {"exp_avg": torch.ones(2), "step": torch.tensor(3.0)}},
            "param_groups": [{"lr": 0.1, "params": [0]}],
        },
        "rng": [torch.get_rng_state()],
        "data": [{"consumed": 12, "epoch": 0}],
        "counters": {"skipped_steps": 1, "bad_in_row": 0},
        "config": {"run": {"dir": "x", "seed": 0}, "optim": {"betas": [0.9, 0.99]}},
    }


def test_round_trip_and_layout(tmp_path: Path) -> None:
    state = _state(5)
    folder = save_checkpoint(tmp_path, 5, state=state, keep_last=2)
    assert folder == tmp_path / "checkpoints" / "step-00000005"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [
            MARKER,
            "config.yaml",
            "encoder.safetensors",
            "predictor.safetensors",
            "target_encoder.safetensors",
            "train_state.pt",
        ]
    )
    # weights readable without torch.load; the rest with weights_only=True
    target = load_file(str(folder / "target_encoder.safetensors"))
    torch.testing.assert_close(target["blocks.0.weight"], state["encoder"]["blocks.0.weight"] * 2)
    plain = torch.load(folder / "train_state.pt", weights_only=True)
    assert plain["step"] == 5 and plain["counters"] == {"skipped_steps": 1, "bad_in_row": 0}
    loaded = load_checkpoint(folder)
    assert loaded["step"] == 5
    for key in ("encoder", "predictor", "target_encoder"):
        assert loaded[key].keys() == state[key].keys()
        for name in state[key]:
            assert torch.equal(loaded[key][name], state[key][name])
    assert torch.equal(loaded["rng"][0], state["rng"][0])
    assert loaded["optimizer"]["param_groups"][0]["lr"] == 0.1
    assert loaded["config"]["optim"]["betas"] == [0.9, 0.99]
    # a run folder resolves to its latest checkpoint
    assert load_checkpoint(tmp_path)["step"] == 5


def test_keep_last_prunes_only_old_complete_ones(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, state=_state(step), keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000030", "step-00000040"]
    assert latest_checkpoint(tmp_path).name == "step-00000040"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_shared_storage_tensors_are_saved(tmp_path: Path) -> None:
    w = torch.randn(4, 4)
    state = {"encoder": {"a": w, "b": w, "c": w[0]}}
    loaded = load_checkpoint(save_checkpoint(tmp_path, 1, state=state, keep_last=1))
    assert torch.equal(loaded["encoder"]["b"], w) and torch.equal(loaded["encoder"]["c"], w[0])


def test_half_written_checkpoints_are_ignored(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path, 100, state=_state(100), keep_last=3)
    root = tmp_path / "checkpoints"
    # a killed save: a temp folder with a later step, even with a marker inside
    tmp = root / ".tmp-step-00000200"
    tmp.mkdir()
    (tmp / "encoder.safetensors").write_bytes(b"partial")
    (tmp / MARKER).write_text("200\n")
    # a step folder that never got its marker
    unmarked = root / "step-00000300"
    unmarked.mkdir()
    (unmarked / "train_state.pt").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == good
    assert load_checkpoint(tmp_path)["step"] == 100
    with pytest.raises(CheckpointError, match="COMPLETE"):
        load_checkpoint(unmarked)
    # the next save cleans the stale temp folder and becomes the latest
    save_checkpoint(tmp_path, 150, state=_state(150), keep_last=3)
    assert not tmp.exists()
    assert latest_checkpoint(tmp_path).name == "step-00000150"


def test_no_checkpoint(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):  # CheckpointError is a FileNotFoundError
        load_checkpoint(tmp_path)


def test_resave_same_step_replaces(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 7, state=_state(1), keep_last=2)
    save_checkpoint(tmp_path, 7, state=_state(2), keep_last=2)
    loaded = load_checkpoint(tmp_path)
    assert torch.equal(
        loaded["encoder"]["blocks.0.weight"], _state(2)["encoder"]["blocks.0.weight"]
    )
    assert len(list_checkpoints(tmp_path)) == 1
