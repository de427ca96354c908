"""World checkpoints store the encoder under the bare ViT keys (as exports do) and still read
the older form, whose keys carried the VideoEncoder wrapper's ``encoder.`` level."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from test_world_model import tiny_model

from vjepa.train.checkpoint import (
    join_weights,
    restore_training_state,
    save_training_state,
    split_weights,
)
from vjepa.world.io import export_world_model, load_world_model, world_description


def _save(model: torch.nn.Module, run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "world.json").write_text(json.dumps(world_description(model)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    folder = save_training_state(
        Accelerator(cpu=True),
        model,
        opt,
        run_dir=run,
        step=2,
        per_rank={},
        extra={},
        keep_last=1,
    )
    assert folder is not None
    return folder


def _restore(model: torch.nn.Module, folder: Path) -> None:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    restore_training_state(Accelerator(cpu=True), model, opt, folder)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_split_and_join_drop_and_restore_a_prefix() -> None:
    t = torch.zeros(1)
    full = {"encoder.encoder.w": t, "predictor.b": t}
    files = split_weights(full, {"encoder": "encoder."})
    assert set(files["encoder"]) == {"w"} and set(files["predictor"]) == {"b"}
    assert set(join_weights(files, {"encoder": "encoder."})) == set(full)
    old = {"encoder": {"encoder.w": t}, "predictor": {"b": t}}  # the older file form
    assert set(join_weights(old, {"encoder": "encoder."})) == set(full)
    with pytest.raises(RuntimeError, match="encoder.other"):
        split_weights({"encoder.other.w": t}, {"encoder": "encoder."})


def test_world_checkpoint_has_bare_vit_keys_and_restores(tmp_path: Path) -> None:
    model = tiny_model()
    folder = _save(model, tmp_path / "run")
    keys = set(load_file(str(folder / "encoder.safetensors")))
    assert keys == set(model.encoder.encoder.state_dict())  # the bare ViT names
    assert not any(k.startswith("encoder.") for k in keys)
    export = export_world_model(tmp_path / "run", tmp_path / "export")
    assert set(load_file(str(export / "encoder.safetensors"))) == keys  # same as an export
    other = tiny_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    assert not _same(other, model)
    _restore(other, folder)
    assert _same(other, model)
    assert _same(load_world_model(tmp_path / "run"), model)


def test_old_world_checkpoint_with_wrapper_keys_still_loads(tmp_path: Path) -> None:
    model = tiny_model()
    folder = _save(model, tmp_path / "run")
    path = folder / "encoder.safetensors"
    bare = load_file(str(path))
    save_file({f"encoder.{k}": v for k, v in bare.items()}, str(path))  # the older form
    other = tiny_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    _restore(other, folder)
    assert _same(other, model)
    assert _same(load_world_model(tmp_path / "run"), model)
