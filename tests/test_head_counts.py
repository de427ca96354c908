"""Official-format checkpoints of a non-official size: separate encoder and predictor head
counts wherever a checkpoint is read, and a said head-dim-64 guess when one is not given."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from vjepa.artifacts.arch import build_predictor_from_arch
from vjepa.artifacts.encoder import load_encoder
from vjepa.artifacts.official import (
    build_from_official,
    guess_heads,
    load_state_strict,
    read_official,
)
from vjepa.artifacts.sources import read
from vjepa.cli import main
from vjepa.config import load_config
from vjepa.eval.probe.features import load_backbone
from vjepa.models.encoder import VisionTransformer
from vjepa.models.predictor import Predictor

REF = Path(__file__).parent / "fixtures" / "reference"
GEOMETRY = dict(img_size=32, num_frames=4, patch_size=16, tubelet_size=2, pos_embed="sincos")


@pytest.fixture(scope="module")
def odd_official(tmp_path_factory) -> tuple[Path, dict]:
    """An official-format file: a 96-wide encoder with 3 heads, a 64-wide predictor with 2."""
    gen = torch.Generator().manual_seed(0)
    enc = VisionTransformer(width=96, depth=1, heads=3, generator=gen, **GEOMETRY).eval()
    pred = Predictor(
        embed_dim=96, width=64, depth=1, heads=2, num_mask_tokens=1, generator=gen, **GEOMETRY
    ).eval()
    with torch.no_grad():
        pred.mask_tokens[0].normal_(generator=gen)
    state = {k: enc.state_dict() for k in ("encoder", "target_encoder")}
    state["predictor"] = pred.state_dict()
    state = {k: {f"module.{n}": t for n, t in v.items()} for k, v in state.items()}  # DDP names
    path = tmp_path_factory.mktemp("odd") / "odd.pt"
    torch.save(state, path)
    return path, {"encoder": enc, "predictor": pred}


def test_guess_is_head_dim_64_and_a_divisor() -> None:
    assert [guess_heads(w) for w in (32, 64, 96, 384, 768, 200)] == [1, 1, 1, 6, 12, 2]


def test_fixture_without_heads_loads_with_a_said_guess(caplog) -> None:
    ckpt = read_official(REF / "jepa_tiny" / "checkpoint.pt")  # width 96: not an official size
    with caplog.at_level(logging.WARNING, logger="vjepa.artifacts.official"):
        encoder, predictor = build_from_official(ckpt)
    assert encoder.blocks[0].attn.num_heads == 1 and predictor.num_heads == 1
    (line,) = [r.getMessage() for r in caplog.records]  # one line, for the encoder only
    assert "width 96 is not an official size" in line and "guessing 1 (head dim 96)" in line


def test_export_applies_encoder_heads_to_the_encoder_only(odd_official, tmp_path) -> None:
    path, modules = odd_official
    # The failure: 3 heads were applied to the 64-wide predictor too.
    assert main(["export", str(path), "--out", str(tmp_path / "a"), "--num-heads", "3"]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["architecture"]["heads"] == 3
    assert config["predictor"]["heads"] == 1  # 64 % 3 != 0: the head-dim-64 guess
    argv = ["export", str(path), "--out", str(tmp_path / "b"), "--num-heads", "3"]
    assert main([*argv, "--pred-num-heads", "2"]) == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert (config["architecture"]["heads"], config["predictor"]["heads"]) == (3, 2)
    # The exported predictor computes what the original did (a wrong head count would not).
    predictor = build_predictor_from_arch(config["predictor"])
    loaded = read(tmp_path / "b", which="predictor")
    load_state_strict(predictor, loaded.state, "predictor")
    gen = torch.Generator().manual_seed(1)
    ctx = torch.randn(2, 5, 96, generator=gen)  # [B, Kc, D]
    ctx_idx, tgt_idx = torch.arange(5).repeat(2, 1), torch.arange(5, 8).repeat(2, 1)
    with torch.no_grad():
        expected = modules["predictor"](ctx, ctx_idx, tgt_idx)  # [B, Kt, D]
        torch.testing.assert_close(predictor(ctx, ctx_idx, tgt_idx), expected)
    # The encoder, loaded like `vjepa probe` does with probe.num_heads, matches too.
    assert load_config(None, ["probe.num_heads=3"], command="probe").probe.num_heads == 3
    frozen, _ = load_backbone(
        str(path), random_model="tiny_cpu", data_cfg=None, model_cfg=None, seed=0, num_heads=3
    )
    x = torch.randn(1, 3, 4, 32, 32, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), modules["encoder"](x))
    assert load_encoder(tmp_path / "b").encoder.blocks[0].attn.num_heads == 3


def test_bad_head_count_is_a_user_error(odd_official, tmp_path, capsys) -> None:
    path, _ = odd_official
    argv = ["import", str(path), "--out", str(tmp_path / "i"), "--pred-num-heads", "5"]
    assert main([*argv, "--num-heads", "3"]) == 2
    assert "pred_num_heads=5 does not divide its width 64" in capsys.readouterr().err


def test_cli_says_the_guess_in_one_line(odd_official, tmp_path, caplog) -> None:
    path, _ = odd_official
    argv = ["import", str(path), "--out", str(tmp_path / "i"), "--num-heads", "3"]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    (line,) = [r.getMessage() for r in caplog.records]  # uncaught by handlers: one stderr line
    assert "\n" not in line and "predictor: width 64 is not an official size" in line
    assert "guessing 1 (head dim 64): set pred_num_heads" in line
    config = json.loads((tmp_path / "i" / "config.json").read_text())
    assert (config["architecture"]["heads"], config["predictor"]["heads"]) == (3, 1)
