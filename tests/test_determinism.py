"""run.deterministic: two short runs with the same seed give the same parameters; the
metrics.jsonl header records what else decides a run's numbers (decoder, threads, workers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_utils import final_weights, make_shards, tiny_overrides

from vjepa.config import load_config
from vjepa.train.metrics import read_metrics
from vjepa.train.pretrain import pretrain


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards"), per_class=3, per_shard=6)


def _run(run_dir: Path, shards: Path, seed: int) -> dict[str, dict]:
    overrides = tiny_overrides(
        run_dir, shards, "train.max_steps=4", "run.deterministic=true", f"run.seed={seed}"
    )
    try:
        pretrain(load_config(None, overrides))
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)  # process-wide: leave other tests as they were
    return final_weights(run_dir)


def test_same_seed_same_parameters_and_the_header_says_how(tmp_path: Path, shards: Path) -> None:
    first = _run(tmp_path / "a", shards, seed=3)
    second = _run(tmp_path / "b", shards, seed=3)
    other = _run(tmp_path / "c", shards, seed=4)
    for part in first:
        assert first[part].keys() == second[part].keys()
        for key in first[part]:
            assert torch.equal(first[part][key], second[part][key]), f"{part}.{key} differs"
    enc = "blocks.0.attn.qkv.weight"
    assert not torch.equal(first["encoder"][enc], other["encoder"][enc])  # the seed matters
    header = read_metrics(tmp_path / "a" / "metrics.jsonl")[0]
    assert header["event"] == "start"
    assert header["deterministic"] is True
    assert header["num_workers"] == 0 and header["threads"] == 1
    assert header["decoder"] in ("torchcodec", "pyav", "decord")
