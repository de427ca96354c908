"""One run per folder: vjepa.train.runlock with real processes."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vjepa.errors import UsageError
from vjepa.train.runlock import LOCK_FILE, RunLock, RunLockedError, read_lock

# A run that takes the lock, says so, then holds it until its stdin closes.
HOLDER = """
import sys
from vjepa.train.runlock import RunLock
with RunLock(sys.argv[1], is_main=True):
    print("held", flush=True)
    sys.stdin.read()
"""

# A second run on the same folder: exit 2 with the one-line message, as the CLI does.
SECOND = """
import sys
from vjepa.errors import UsageError
from vjepa.train.runlock import RunLock
try:
    with RunLock(sys.argv[1], is_main=True):
        print("acquired", flush=True)
except UsageError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
"""


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, **kw)


def test_second_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    holder = _python(HOLDER, str(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        record = read_lock(tmp_path)
        assert record["pid"] == holder.pid and record["host"] == socket.gethostname()

        t0 = time.monotonic()
        second = _python(SECOND, str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = second.communicate(timeout=30)
        elapsed = time.monotonic() - t0
        assert second.returncode == 2, (out, err)
        assert "acquired" not in out
        lines = err.strip().splitlines()
        assert len(lines) == 1  # one line, no traceback
        assert f"pid {holder.pid}" in lines[0] and socket.gethostname() in lines[0]
        assert elapsed < 5.0, elapsed
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    # Released on exit: the folder is free again.
    assert not (tmp_path / LOCK_FILE).exists()
    again = _python(SECOND, str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = again.communicate(timeout=30)
    assert again.returncode == 0 and out.strip() == "acquired", err


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path: Path, caplog) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)  # reaped: its pid no longer exists
    stale = {"host": socket.gethostname(), "pid": dead.pid, "started": "2026-01-01T00:00:00Z"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    with caplog.at_level(logging.WARNING, logger="vjepa.train"):
        with RunLock(tmp_path, is_main=True) as lock:
            assert lock.held
            assert read_lock(tmp_path)["pid"] == os.getpid()
    takeovers = [r.getMessage() for r in caplog.records if "stale run lock" in r.getMessage()]
    assert len(takeovers) == 1 and str(dead.pid) in takeovers[0]
    assert read_lock(tmp_path) is None


def test_lock_of_another_host_is_respected(tmp_path: Path) -> None:
    other = {"host": "node-elsewhere", "pid": 1, "started": "2026-01-01T00:00:00Z"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(other))
    with pytest.raises(RunLockedError, match="pid 1 on node-elsewhere") as info:
        RunLock(tmp_path, is_main=True).acquire()
    assert isinstance(info.value, UsageError)
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == other  # untouched


def test_only_the_main_process_takes_it(tmp_path: Path) -> None:
    with RunLock(tmp_path, is_main=True):
        with RunLock(tmp_path, is_main=False) as other_rank:  # rank 1 of the same run
            assert not other_rank.held
        assert read_lock(tmp_path)["pid"] == os.getpid()  # rank 1 did not release it
    assert read_lock(tmp_path) is None


def test_requeued_slurm_job_takes_over_its_own_lock(tmp_path: Path, monkeypatch, caplog) -> None:
    # The first run of job 4242 was killed on node-a; the requeued run starts on another node.
    old = {"host": "node-a", "pid": 77, "started": "2026-01-01T00:00:00Z", "job": "4242"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(old))
    monkeypatch.setenv("SLURM_JOB_ID", "4343")  # another job: refused
    with pytest.raises(RunLockedError, match="pid 77 on node-a"):
        RunLock(tmp_path, is_main=True).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # the same job, requeued: taken over
    with caplog.at_level(logging.WARNING, logger="vjepa.train"):
        with RunLock(tmp_path, is_main=True):
            assert read_lock(tmp_path)["job"] == "4242"
            assert read_lock(tmp_path)["pid"] == os.getpid()
    assert any("earlier run of this SLURM job" in r.getMessage() for r in caplog.records)


def test_a_nested_hold_in_one_process_is_the_same_hold(tmp_path: Path) -> None:
    # `vjepa finetune` holds its folder for the report and calls the loop, which takes it again
    with RunLock(tmp_path, is_main=True) as outer:
        with RunLock(tmp_path / ".", is_main=True) as inner:
            assert inner.held and read_lock(tmp_path)["pid"] == os.getpid()
        assert (tmp_path / LOCK_FILE).exists()  # the inner end does not release the outer hold
        assert outer.held
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_folder_the_lock_made_goes_when_left_empty(tmp_path: Path) -> None:
    with RunLock(tmp_path / "new", is_main=True):
        pass
    assert not (tmp_path / "new").exists()  # a command that stopped early leaves nothing
    with RunLock(tmp_path / "used", is_main=True):
        (tmp_path / "used" / "metrics.jsonl").write_text("{}\n")
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["metrics.jsonl"]


def _config(tmp_path: Path, command: str, *overrides: str) -> Path:
    from vjepa.config import load_config, save_config

    path = tmp_path / f"{command.replace(' ', '_')}.yaml"
    save_config(load_config(None, list(overrides), command=command), path)
    return path


def _commands(tmp_path: Path, folder: Path) -> dict[str, list[str]]:
    """Each newly covered command, writing into ``folder``, ready to run."""
    shard = tmp_path / "x.tar"  # the shard spec must name a file: nothing reads it here
    shard.touch()
    plan = _config(tmp_path, "plan", "plan.env=vjepa/TwoRooms-v0", "plan.model=oracle")
    world = _config(tmp_path, "world train", f"data.shards={shard}")
    return {
        "collect": ["collect", "vjepa/TwoRooms-v0", "--episodes", "2", "--steps", "4"]
        + ["--out", str(folder)],
        "extract": ["extract", "random", str(shard), "--out", str(folder)],
        "plan": ["plan", str(plan), f"run.dir={folder}"],
        "world train": ["world", "train", str(world), f"run.dir={folder}"],
    }


@pytest.mark.parametrize("command", ["collect", "extract", "plan", "world train"])
def test_every_command_that_writes_a_folder_is_refused_on_a_held_one(
    tmp_path: Path, command: str
) -> None:
    folder = tmp_path / "out"
    args = _commands(tmp_path, folder)[command]
    holder = _python(HOLDER, str(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        began = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "vjepa", *args],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - began
        assert [p.name for p in folder.iterdir()] == [LOCK_FILE]  # the refused one wrote nothing
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    assert second.returncode == 2, second.stderr[-3000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr  # one line, no traceback
    assert lines[0].startswith(f"vjepa {command.split()[0]}: error: run folder {folder} ")
    assert f"in use by pid {holder.pid} on {socket.gethostname()}" in lines[0]
    assert took <= 5.0, took
    assert not folder.exists()  # the holder created it and, left empty, removed it


def _library_calls(tmp_path: Path, folder: Path) -> dict:
    """The library functions behind those commands (what the demo and notebooks call)."""
    from vjepa.config import load_config
    from vjepa.eval.probe.features import extract
    from vjepa.world.collect import collect
    from vjepa.world.planning.mpc import run_plan
    from vjepa.world.train import world_train

    shard = tmp_path / "x.tar"
    shard.touch()
    plan = ["plan.env=vjepa/TwoRooms-v0", "plan.model=oracle", f"run.dir={folder}"]
    world = [f"data.shards={shard}", f"run.dir={folder}"]
    return {
        "collect": lambda: collect("vjepa/TwoRooms-v0", folder, episodes=2, steps=4),
        "extract": lambda: extract("random", str(shard), folder),
        "plan": lambda: run_plan(load_config(None, plan, command="plan")),
        "world train": lambda: world_train(load_config(None, world, command="world train")),
    }


@pytest.mark.parametrize("command", ["collect", "extract", "plan", "world train"])
def test_the_library_functions_hold_the_folder_too(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "out"
    call = _library_calls(tmp_path, folder)[command]
    holder = _python(HOLDER, str(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"in use by pid {holder.pid} "):
            call()
        assert [p.name for p in folder.iterdir()] == [LOCK_FILE]
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
