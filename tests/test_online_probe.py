"""The online probe of `vjepa pretrain` (online_probe.*): it writes its top-1 every N steps,
keeps the best checkpoint on request, and never changes what the run trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_utils import final_weights, make_shards, tiny_overrides

import vjepa
from vjepa.config import ConfigError, load_config
from vjepa.train.checkpoint import load_checkpoint
from vjepa.train.evaluation import best_checkpoint
from vjepa.train.metrics import read_metrics
from vjepa.train.pretrain import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards"))  # 6 labelled classes, 48 clips


def _run(run_dir: Path, shards: Path, *extra: str) -> Path:
    steps = ("train.max_steps=10", "train.checkpoint_every=10")
    return pretrain(load_config(None, tiny_overrides(run_dir, shards, *steps, *extra)))


def test_online_probe_writes_top1_and_leaves_the_training_alone(
    tmp_path: Path, shards: Path
) -> None:
    off = _run(tmp_path / "off", shards)
    on = _run(
        tmp_path / "on", shards, "online_probe.every=4", f"online_probe.train_shards={shards}",
        f"online_probe.val_shards={shards}", "online_probe.max_clips=24",
        "train.keep_best=online_knn_top1",
    )  # fmt: skip
    # the same weights, bit for bit: the probe draws from its own generators only
    a, b = final_weights(off), final_weights(on)
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key}"
    rows = [r for r in read_metrics(on / "metrics.jsonl") if "online_knn_top1" in r]
    assert [r["step"] for r in rows] == [4, 8, 10]  # every 4 steps and the last
    for r in rows:
        assert 0 <= r["online_knn_top1"] <= 100 and 0 <= r["online_linear_top1"] <= 100
        assert r["eval_s"] > 0
    # the loss rows are the same too (the probe writes rows of its own)
    loss = [
        [r["loss"] for r in read_metrics(d / "metrics.jsonl") if "loss" in r] for d in (off, on)
    ]
    assert loss[0] == loss[1]
    assert not any("online_knn_top1" in r for r in read_metrics(off / "metrics.jsonl"))
    # keep_best: the first of the best kNN rows, a loadable run folder under best/
    best = max(rows, key=lambda r: (r["online_knn_top1"], -r["step"]))
    kept = best_checkpoint(on)
    assert kept is not None and int(kept.name.split("-")[1]) == best["step"]
    counters = load_checkpoint(kept)["counters"]
    assert (
        counters["best_value"] == best["online_knn_top1"] and counters["best_step"] == best["step"]
    )
    encoder = vjepa.load_encoder(on / "best")
    assert encoder.embed_dim == 96
    assert (on / "health.png").is_file()


def test_online_probe_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="both online_probe.train_shards and"):
        load_config(None, ["online_probe.train_shards=x"])
    # on only once both labelled sets are given: every 1000 steps by default, 0 turns it off
    assert load_config(None).online_probe.interval() == 0
    two = ["online_probe.train_shards=a", "online_probe.val_shards=b"]
    assert load_config(None, two).online_probe.interval() == 1000
    assert load_config(None, [*two, "online_probe.every=0"]).online_probe.interval() == 0
    with pytest.raises(ConfigError, match="not a metric of it"):
        load_config(None, ["train.keep_best=dev_top1"])
    with pytest.raises(ConfigError, match="needs the evaluation"):
        load_config(None, ["train.keep_best=online_knn_top1"])
    with pytest.raises(ConfigError, match="no evaluation"):
        load_config(None, ["train.keep_best=x", "world.pool=1"], command="world train")
    with pytest.raises(ConfigError, match="finetune.dev_shards"):
        load_config(None, ["finetune.eval_every=5"], command="finetune")
