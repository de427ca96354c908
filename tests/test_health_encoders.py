"""Health metrics watch the encoder that trains (the context encoder), and a frozen
encoder's flat numbers are not plotted as a trend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_utils import (
    make_shards,
    tiny_overrides,
)

from vjepa.config import load_config
from vjepa.train.metrics import read_metrics
from vjepa.train.plots import is_flat, plot_health
from vjepa.train.pretrain import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


def _health_rows(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "context_std" in r]


def test_frozen_teacher_run_logs_the_context_encoder_and_it_moves(tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards", per_class=3, per_shard=6)
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(
        run_dir,
        shards,
        "train.max_steps=9",
        "train.health_every=3",
        "optim.ema=[1.0,1.0]",  # the demo's frozen random teacher
        "data.shuffle_buffer=0",
    )
    pretrain(load_config(None, overrides))
    rows = _health_rows(run_dir)
    assert [r["step"] for r in rows] == [3, 6, 9]
    assert not any(k.startswith("target_") for r in rows for k in r)  # frozen: not logged
    for key in ("context_std", "context_rankme", "context_clip_std"):
        values = [r[key] for r in rows]
        assert all(v > 0 for v in values)
        assert not is_flat(values), f"{key} did not change: {values}"
    assert (run_dir / "health.png").stat().st_size > 5000


def test_moving_teacher_logs_both_encoders(tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards", per_class=2, per_shard=6)
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(run_dir, shards, "train.max_steps=5")  # ema [0.99, 1.0]
    pretrain(load_config(None, overrides))
    (row,) = _health_rows(run_dir)
    assert row["context_std"] > 0 and row["target_std"] > 0
    assert row["context_std"] != row["target_std"]


def test_flat_series_are_labelled(tmp_path: Path) -> None:
    assert is_flat([0.8, 0.8, 0.8]) and not is_flat([0.8, 0.81]) and not is_flat([0.8])
    path = tmp_path / "metrics.jsonl"
    rows = [
        {"step": s, "context_std": 1.0 / s, "context_rankme": 3.0 + s, "target_std": 0.8}
        for s in (5, 10, 15)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_health(path, tmp_path / "health.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
