"""Preemption: a real child process gets SIGTERM mid-loop, finishes its step, exits 75."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from train_utils import free_port

from vjepa.train.preempt import PREEMPTED_EXIT_CODE, Preemption, any_rank_requested

# A training-loop stand-in: each step takes ~0.3 s and logs its start and end; between steps
# it asks for preemption, writes a "checkpoint" marker and exits as the loop will.
LOOP = """
import json, sys, time
from pathlib import Path
from vjepa.train.preempt import Preemption, any_rank_requested, exit_preempted
out = Path(sys.argv[1])
log = open(out / "steps.log", "a", buffering=1)
with Preemption() as pre:
    for step in range(1000):
        log.write(f"start {step}\\n")
        for _ in range(30):             # the step's work, interrupted by the signal
            time.sleep(0.01)
        log.write(f"done {step}\\n")
        if any_rank_requested(pre.requested()):
            (out / "checkpoint.json").write_text(json.dumps({"step": step + 1}))
            exit_preempted(pre.received.name, step + 1, str(out / "checkpoint.json"))
"""


def _run_and_signal(tmp_path: Path, sig: signal.Signals) -> tuple[int, list[str], str, float]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen(
        [sys.executable, "-c", LOOP, str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True
    )
    steps = tmp_path / "steps.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if steps.exists() and "start 2" in steps.read_text():
            break
        time.sleep(0.02)
    time.sleep(0.1)  # land inside step 2's work
    t0 = time.monotonic()
    child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    return child.returncode, steps.read_text().split("\n")[:-1], err, time.monotonic() - t0


def test_sigterm_finishes_the_step_checkpoints_and_exits_75(tmp_path: Path) -> None:
    rc, lines, err, seconds = _run_and_signal(tmp_path, signal.SIGTERM)
    assert rc == PREEMPTED_EXIT_CODE == 75, err
    last_start = max(int(line.split()[1]) for line in lines if line.startswith("start"))
    assert lines[-1] == f"done {last_start}"  # the step in flight finished, no new one began
    assert last_start >= 2
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved == {"step": last_start + 1}  # the checkpoint holds every finished step
    assert "preempted (SIGTERM)" in err and "Traceback" not in err
    assert seconds < 5.0  # within one step (0.3 s) plus start-up slack


def test_sigusr1_is_the_early_warning(tmp_path: Path) -> None:
    rc, lines, err, _ = _run_and_signal(tmp_path, signal.SIGUSR1)
    assert rc == 75 and "preempted (SIGUSR1)" in err
    assert lines[-1].startswith("done")


def test_handlers_are_restored_and_flag_set() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    with Preemption() as pre:
        assert not pre.requested()
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)  # Python runs the handler at the next bytecode boundary
        assert pre.requested() and pre.received == signal.SIGUSR1
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal keeps the first reason
        assert pre.received == signal.SIGUSR1
    assert {s: signal.getsignal(s) for s in before} == before
    assert any_rank_requested(True) is True and any_rank_requested(False) is False


# Two gloo ranks; only rank 1 gets the signal: both must stop after the same step.
RANKS = """
import sys, time
from pathlib import Path
import torch.distributed as dist
from vjepa.train.preempt import Preemption, any_rank_requested, exit_preempted
rank, port, out = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
log = open(out / f"rank{rank}.log", "a", buffering=1)
with Preemption() as pre:
    for step in range(1000):
        log.write(f"start {step}\\n")
        time.sleep(0.1)
        dist.barrier()                      # the step's collective work
        log.write(f"done {step}\\n")
        if any_rank_requested(pre.requested()):
            log.write(f"stop {step + 1} {pre.requested()}\\n")
            dist.destroy_process_group()
            exit_preempted(pre.received.name if pre.received else "peer", step + 1, "-")
"""


def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step(tmp_path: Path) -> None:
    port = str(free_port())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANKS, str(r), port, str(tmp_path)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    log1 = tmp_path / "rank1.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log1.exists() and "done 2" in log1.read_text()):
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [75, 75], errs
    stops = [(tmp_path / f"rank{r}.log").read_text().split("\n")[-2] for r in range(2)]
    step0, step1 = (line.split()[1] for line in stops)
    assert step0 == step1  # the same step on both ranks
    assert stops[0].endswith("False") and stops[1].endswith("True")  # rank 0 was told
    assert "preempted (peer)" in errs[0] and "preempted (SIGTERM)" in errs[1]
