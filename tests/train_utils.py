"""Shared helpers of the training tests: real shards of the sample corpus, tiny-run overrides."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def make_shards(out_dir: Path, *, per_class: int = 8, per_shard: int = 12) -> Path:
    """Real webdataset shards (vjepa.data.writer) of ``per_class`` sample videos per class."""
    from vjepa.data.formats import read_folder
    from vjepa.data.writer import write_shards

    listing = read_folder(SAMPLE, labels_from_folders=True)
    by_class: dict[int, list] = {}
    for item in listing.items:
        by_class.setdefault(item.label, []).append(item)
    items = [it for label in sorted(by_class) for it in by_class[label][:per_class]]
    write_shards(
        items,
        out_dir,
        max_count=per_shard,
        label_names=listing.label_names,
        progress=False,
    )
    return out_dir


def tiny_overrides(run_dir: Path, shards: Path, *extra: str) -> list[str]:
    """A tiny model on 8 x 32 x 32 clips (4 x 4 x 4 tokens): a step takes tens of ms on a CPU."""
    return [
        f"run.dir={run_dir}",
        f"data.shards={shards}",
        "run.trackers=[]",
        "run.log_every=1",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.frames_per_clip=8",
        "data.frame_step=2",
        "data.crop_size=32",
        "data.shuffle_buffer=16",
        "data.random_resize_scale=[0.5,1.0]",
        "model.name=tiny_cpu",
        "model.patch_size=8",
        "model.tubelet_size=2",
        "model.pred_width=48",
        "model.pred_depth=2",
        "model.pred_heads=4",
        "mask.blocks=[{num_blocks: 2, spatial_scale: [0.25, 0.25]}, {num_blocks: 1, spatial_scale: [0.6, 0.6]}]",
        "optim.lr=1e-3",
        "optim.start_lr=2e-4",
        "optim.final_lr=1e-5",
        "optim.warmup_steps=5",
        "optim.ema=[0.99,1.0]",
        "train.health_every=5",
        "train.threads=1",  # tiny matrices: one thread is fastest, and deterministic
        *extra,
    ]


def finetune_overrides(run_dir: Path, corpus: dict[str, Path], *extra: str) -> list[str]:
    """A tiny `vjepa finetune`: tiny_cpu at 8 x 32 x 32 (64 tokens), a random backbone, on
    the demo corpus folders ``corpus`` (train / dev / val)."""
    return [
        f"run.dir={run_dir}",
        f"data.shards={corpus['train']}",
        "run.trackers=[]",
        "run.log_every=1",
        "data.batch_size=8",
        "data.num_workers=0",
        "data.frames_per_clip=8",
        "data.frame_step=2",
        "data.crop_size=32",
        "data.shuffle_buffer=64",
        "data.hflip=false",
        "data.random_resize_scale=[0.5,1.0]",
        "model.name=tiny_cpu",
        "model.patch_size=8",
        "model.tubelet_size=2",
        "model.pos_embed=rope",
        "optim.lr=1e-3",
        "optim.start_lr=1e-4",
        "optim.final_lr=1e-5",
        "optim.warmup_steps=5",
        "optim.weight_decay=0.05",
        "optim.final_weight_decay=0.05",
        "optim.clip_grad=1.0",
        "train.threads=1",
        "train.health_every=1000",
        "finetune.head_heads=4",
        f"finetune.dev_shards={corpus['dev']}",
        f"finetune.val_shards={corpus['val']}",
        "finetune.eval_batch_size=16",
        *extra,
    ]


def run_env(threads: int = 1) -> dict[str, str]:
    """Environment of a subprocess run: the repo importable, fixed threads (determinism)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return env


def write_config(path: Path, overrides: list[str]) -> Path:
    """A complete YAML config (every key) made from ``overrides``: the CONFIG of a CLI run."""
    from vjepa.config import load_config, save_config

    save_config(load_config(None, overrides), path)
    return path


def vjepa_cmd(config: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "vjepa", "pretrain", str(config), *overrides]


def run_vjepa(config: Path, *overrides: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        vjepa_cmd(config, *overrides),
        cwd=ROOT,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_after_first_checkpoint(command: list[str], run_dir: Path, timeout: float = 90) -> int:
    """Start ``command`` (a training into ``run_dir``), SIGKILL it as soon as a complete
    checkpoint exists; returns that checkpoint's step (the step the re-run resumes from)."""
    from vjepa.train.checkpoint import latest_checkpoint

    proc = subprocess.Popen(
        command, cwd=ROOT, env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    while latest_checkpoint(run_dir) is None:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return int(latest_checkpoint(run_dir).name.split("-")[1])


def final_weights(run_dir: Path) -> dict[str, dict]:
    """The three safetensors files of the run's latest checkpoint."""
    from vjepa.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None, f"no complete checkpoint in {run_dir}"
    return {
        name: load_file(str(ckpt / f"{name}.safetensors"))
        for name in ("encoder", "predictor", "target_encoder")
    }


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (process groups and local servers of the tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_rank(rank: int, body: Callable[[int, Path], None], world: int, port: int, out: str):
    """One spawned rank: a gloo group on 127.0.0.1, ``body(rank, out)``, then an exit that
    skips the interpreter's teardown (torch's gloo threads can abort it with "terminate called
    without an active exception", SIGABRT, after the results are already written)."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        body(rank, Path(out))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn_ranks(body: Callable[[int, Path], None], world: int, out: Path) -> None:
    """Run ``body(rank, out)`` on ``world`` gloo ranks (a module-level function, picklable)."""
    mp.spawn(_gloo_rank, args=(body, world, free_port(), str(out)), nprocs=world, join=True)


_HOLDER = """
import sys
from vjepa.train.runlock import RunLock
with RunLock(sys.argv[1], is_main=True):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def lock_held_by_another_process(run_dir: Path) -> Iterator[subprocess.Popen]:
    """A real process that holds ``run_dir``'s run lock until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir)],
        env=run_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
