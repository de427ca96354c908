"""Real 2-process runs on the CPU (gloo) through `accelerate launch`: DDP, and FSDP2 with a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_utils import ROOT, final_weights, make_shards, run_env, tiny_overrides, write_config

from vjepa.train.checkpoint import latest_checkpoint, load_checkpoint
from vjepa.train.metrics import read_metrics

ACCELERATE = Path(sys.executable).with_name("accelerate")
STEPS = 6


def _keys(path: Path) -> list[str]:
    return [k for line in path.read_text().splitlines() for k in line.split()[1:]]


def _launch(config: Path, port: int, *, fsdp: bool, run_dir: Path) -> list[str]:
    # `--cpu --num_processes 2` would start one process: the CPU multi-process path is
    # --multi_gpu plus ACCELERATE_USE_CPU (see configs/accelerate/cpu_2proc.yaml).
    return [
        str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        "-m", "vjepa", "pretrain", str(config), f"run.dir={run_dir}", f"train.fsdp={str(fsdp).lower()}",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return run_env() | {"ACCELERATE_USE_CPU": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, DDP run folder): one straight 2-process DDP run, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("dist")
    shards = make_shards(tmp / "shards")  # 48 clips in 4 shards: 2 per rank
    config = write_config(
        tmp / "tiny.yaml",
        tiny_overrides(
            tmp / "unused",
            shards,
            f"train.max_steps={STEPS}",
            "train.checkpoint_every=2",
            "train.keep_last=3",
            "train.debug_dump=true",
        ),
    )
    run_dir = tmp / "ddp"
    cmd = _launch(config, 29533, fsdp=False, run_dir=run_dir)
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return config, run_dir


@pytest.mark.slow
def test_two_process_ddp_on_cpu(setup: tuple[Path, Path]) -> None:
    _, run_dir = setup
    start = read_metrics(run_dir / "metrics.jsonl")[0]
    assert start["event"] == "start" and start["world_size"] == 2
    assert start["distributed"] == "MULTI_CPU" and start["sharded_params"] == 0
    # both ranks end with identical parameters (encoder, predictor and EMA target)
    digests = [(run_dir / f"params-rank{r}.txt").read_text().strip() for r in (0, 1)]
    assert len(digests[0]) == 64 and digests[0] == digests[1]
    # each rank read its own half of the corpus: 6 steps x 4 clips = 24 distinct keys per rank
    keys = [_keys(run_dir / f"keys-rank{r}.txt") for r in (0, 1)]
    assert len(keys[0]) == len(set(keys[0])) == 24 and len(keys[1]) == len(set(keys[1])) == 24
    assert not set(keys[0]) & set(keys[1])
    # the checkpoint holds one data position and RNG state per rank, and is a normal checkpoint
    state = load_checkpoint(run_dir)
    assert state["world_size"] == 2 and state["counters"]["step"] == STEPS
    assert [r["data"]["batches"] for r in state["per_rank"]] == [STEPS, STEPS]
    assert set(final_weights(run_dir)) == {"encoder", "predictor", "target_encoder"}


@pytest.mark.slow
def test_fsdp2_killed_and_resumed_matches_ddp(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """FSDP2 (train.fsdp: fully_shard, every Block a unit) on 2 CPU processes: EMA on the sharded
    (DTensor) parameters, a checkpoint, SIGKILL, resume; the result equals the DDP run."""
    config, ddp_dir = setup
    run_dir = tmp_path / "fsdp"
    proc = subprocess.Popen(
        _launch(config, 29534, fsdp=True, run_dir=run_dir),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes the launcher and ranks
    )
    deadline = time.monotonic() + 150
    while latest_checkpoint(run_dir) is None:
        assert proc.poll() is None, proc.stderr.read().decode()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    first = int(latest_checkpoint(run_dir).name.split("-")[1])
    assert 2 <= first < STEPS, "the run ended before the kill: nothing was resumed"

    cmd = _launch(config, 29535, fsdp=True, run_dir=run_dir)
    again = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=150)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-4000:]
    events = [r for r in read_metrics(run_dir / "metrics.jsonl") if "event" in r]
    assert [e["event"] for e in events] == ["start", "resume"] and events[1]["step"] == first
    # really sharded: every parameter (encoder, predictor and the EMA target) is a DTensor
    assert all(e["sharded_params"] == e["params"] > 0 for e in events)
    digests = [(run_dir / f"params-rank{r}.txt").read_text().strip() for r in (0, 1)]
    assert digests[0] == digests[1]
    a, b = final_weights(ddp_dir), final_weights(run_dir)
    assert load_checkpoint(run_dir)["counters"]["step"] == STEPS
    for name in a:  # fp32: only the reduction order differs (all-reduce vs reduce-scatter)
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            torch.testing.assert_close(b[name][key], a[name][key], rtol=1e-4, atol=1e-5)
    # after the resume the EMA kept moving the sharded target (and it is not a copy)
    resumed = load_checkpoint(run_dir / "checkpoints" / f"step-{first:08d}")["target_encoder"]
    moved = max((b["target_encoder"][k] - resumed[k]).abs().max() for k in resumed)
    assert moved > 1e-6
    assert any(not torch.equal(b["target_encoder"][k], b["encoder"][k]) for k in resumed)
