"""The fault guards wired into a real `vjepa pretrain`: run lock, preemption, full disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from train_utils import (
    ROOT,
    final_weights,
    make_shards,
    run_env,
    run_vjepa,
    tiny_overrides,
    vjepa_cmd,
    write_config,
)

from vjepa.train.checkpoint import is_complete, latest_checkpoint, list_checkpoints
from vjepa.train.metrics import read_metrics
from vjepa.train.preempt import PREEMPTED_EXIT_CODE
from vjepa.train.runlock import LOCK_FILE, read_lock


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards"))


def _steps_logged(run_dir: Path) -> int:
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
    return rows[-1]["step"] if rows else 0


def test_lock_preempt_and_resume_through_the_cli(tmp_path: Path, shards: Path) -> None:
    steps = 24
    extra = (f"train.max_steps={steps}", "train.checkpoint_every=1000")
    config = write_config(
        tmp_path / "tiny.yaml", tiny_overrides(tmp_path / "unused", shards, *extra)
    )
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    done = run_vjepa(config, f"run.dir={straight}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (straight / LOCK_FILE).exists()  # released at the end

    proc = subprocess.Popen(
        vjepa_cmd(config, f"run.dir={cut}"),
        cwd=ROOT,
        env=run_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while (cut / "metrics.jsonl").exists() is False or _steps_logged(cut) < 3:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run made no steps"
        time.sleep(0.02)
    proc.send_signal(signal.SIGSTOP)  # held still (alive) while the second run starts
    assert read_lock(cut)["pid"] == proc.pid

    # a second run on the live folder: exit 2, one line naming the holder, nothing written
    began = time.monotonic()
    second = run_vjepa(config, f"run.dir={cut}")
    refused_after = time.monotonic() - began
    assert second.returncode == 2, second.stderr[-3000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by pid {proc.pid}" in lines[0], second.stderr
    assert refused_after < 20, refused_after

    proc.send_signal(signal.SIGTERM)  # delivered on SIGCONT, in the middle of some step
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=60) == PREEMPTED_EXIT_CODE
    err = proc.stderr.read()
    proc.stderr.close()
    assert "preempted (SIGTERM)" in err and "Traceback" not in err, err[-3000:]
    saved = latest_checkpoint(cut)
    assert saved is not None and is_complete(saved)
    at = int(saved.name.split("-")[1])
    assert 3 <= at < steps, at
    assert not (cut / LOCK_FILE).exists()
    # a lock left by a dead process (the one just preempted) is taken over with one line
    (cut / LOCK_FILE).write_text(
        json.dumps({"host": os.uname().nodename, "pid": proc.pid, "started": "x", "job": None})
    )

    again = run_vjepa(config, f"run.dir={cut}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"taking over the stale run lock {cut / LOCK_FILE} of pid {proc.pid}" in again.stderr
    assert f"resume at step {at}" in again.stdout + again.stderr
    events = [r["event"] for r in read_metrics(cut / "metrics.jsonl") if "event" in r]
    assert events == ["start", "preempted", "resume"]
    a, b = final_weights(straight), final_weights(cut)
    for name in a:
        for key in a[name]:
            torch.testing.assert_close(b[name][key], a[name][key], rtol=0, atol=1e-6)


def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir(parents=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    return res.returncode == 0


def test_a_full_disk_at_checkpoint_keeps_the_previous_one(tmp_path: Path, shards: Path) -> None:
    extra = ("train.max_steps=4", "train.checkpoint_every=2", "train.keep_last=2")
    config = write_config(
        tmp_path / "tiny.yaml", tiny_overrides(tmp_path / "unused", shards, *extra)
    )
    probe = tmp_path / "probe"
    assert run_vjepa(config, f"run.dir={probe}", "train.max_steps=2").returncode == 0
    one = sum(f.stat().st_size for f in latest_checkpoint(probe).rglob("*") if f.is_file())
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, int(one * 1.6) + (256 << 10)):
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        run_dir = disk / "run"
        res = run_vjepa(config, f"run.dir={run_dir}")
        assert res.returncode == 2, res.stderr[-3000:]
        lines = [line for line in res.stderr.splitlines() if "error" in line]
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert f"no space left for a checkpoint in {run_dir / 'checkpoints'}" in lines[0]
        kept = list_checkpoints(run_dir)
        assert [p.name for p in kept] == ["step-00000002"] and is_complete(kept[0])
        assert not list((run_dir / "checkpoints").glob(".tmp-*"))
        assert not (run_dir / LOCK_FILE).exists()
    finally:
        subprocess.run(["umount", str(disk)])
