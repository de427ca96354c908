"""A real 2-process data-parallel run on the CPU (gloo) through `accelerate launch`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from train_utils import ROOT, final_weights, make_shards, run_env, tiny_overrides, write_config

from vjepa.checkpoint import load_checkpoint
from vjepa.metrics import read_metrics

ACCELERATE = Path(sys.executable).with_name("accelerate")


def _keys(path: Path) -> list[str]:
    return [k for line in path.read_text().splitlines() for k in line.split()[1:]]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards")  # 48 clips in 4 shards: 2 per rank
    run_dir = tmp_path / "run"
    config = write_config(
        tmp_path / "tiny.yaml",
        tiny_overrides(
            run_dir,
            shards,
            "train.max_steps=6",
            "train.checkpoint_every=3",
            "train.debug_dump=true",
        ),
    )
    env = run_env() | {"ACCELERATE_USE_CPU": "1"}
    # `--cpu --num_processes 2` would start one process: the CPU multi-process path is
    # --multi_gpu plus ACCELERATE_USE_CPU (see configs/accelerate/cpu_2proc.yaml).
    cmd = [
        str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
        "-m", "vjepa", "pretrain", str(config),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    start = read_metrics(run_dir / "metrics.jsonl")[0]
    assert start["event"] == "start" and start["world_size"] == 2
    # both ranks end with identical parameters (encoder, predictor and EMA target)
    digests = [(run_dir / f"params-rank{r}.txt").read_text().strip() for r in (0, 1)]
    assert len(digests[0]) == 64 and digests[0] == digests[1]
    # each rank read its own half of the corpus: 6 steps x 4 clips = 24 distinct keys per rank
    keys = [_keys(run_dir / f"keys-rank{r}.txt") for r in (0, 1)]
    assert len(keys[0]) == len(set(keys[0])) == 24 and len(keys[1]) == len(set(keys[1])) == 24
    assert not set(keys[0]) & set(keys[1])
    # the checkpoint holds one data position and RNG state per rank, and is a normal checkpoint
    state = load_checkpoint(run_dir)
    assert state["world_size"] == 2 and state["counters"]["step"] == 6
    assert [r["data"]["batches"] for r in state["per_rank"]] == [6, 6]
    assert set(final_weights(run_dir)) == {"encoder", "predictor", "target_encoder"}
