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


def test_generated_corpus_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    """The demo corpora are generated, not shipped: two generations must agree byte for byte,
    or the same seed pretrains on other pixels (x264's macroblock tree made one clip come out
    as 3-6 different streams in 6 encodes before encode_frames turned it off)."""
    import hashlib

    from vjepa.data.synthetic import RENDER, clip_rng, encode_clip, write_split

    frames = RENDER["pan"]("expand", clip_rng(0, "pan", "train", 141), 64, 32)
    assert len({encode_clip(frames) for _ in range(6)}) == 1
    digests = []
    for run in ("a", "b"):
        write_split(tmp_path / run, "pan", "train", 3, seed=0)
        files = sorted((tmp_path / run / "train").glob("*.mp4"))
        digests.append({f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in files})
    assert len(digests[0]) == 18 and digests[0] == digests[1]
