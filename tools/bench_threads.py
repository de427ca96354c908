"""The demo step under CPU contention: quiet, beside a busy loop, beside a second training.

Each measured run is ``vjepa pretrain configs/pretrain/demo_cpu.yaml`` (2 loader workers, on
the demo's train shards written into a temp folder) for ``--steps`` steps; its step time is
the median gap between consecutive ``metrics.jsonl`` rows after ``--skip`` warm-up steps.
Two thread settings, both with OMP_NUM_THREADS unset (what a user gets):

- ``default``: ``train.threads=<cores>``, torch's own default (one thread per core);
- ``auto``: ``train.threads=auto`` (cores / local processes - loader workers, >= 1).

Conditions: ``quiet`` (nothing else of ours running), ``busy`` (beside one ``while True``
Python process), ``train`` (beside a second identical training with the same setting). The
slowdown is the condition's step over the same setting's quiet step; the goals are busy
<= 1.5x, train <= 2.5x. On a machine shared with other work, the quiet figure is not quiet:
read the output with that in mind.

    python tools/bench_threads.py            # 6 runs of 15 steps, <= 60 s each

A run that exceeds ``--timeout`` is stopped and measured on the steps it finished ("inf" when
it finished none past the warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pretrain" / "demo_cpu.yaml"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # what a user's shell has
        env.pop(key, None)
    return env


def _train_cmd(run_dir: Path, shards: Path, threads: str, steps: int) -> list[str]:
    return [
        sys.executable, "-m", "vjepa", "pretrain", str(CONFIG),
        f"run.dir={run_dir}", f"data.shards={shards}", f"train.max_steps={steps}",
        "run.log_every=1", "run.trackers=[]", f"train.checkpoint_every={steps}",
        f"train.threads={threads}",
    ]  # fmt: skip


def _step_times(run_dir: Path, skip: int) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in rows if "loss" in r]
    return [b - a for a, b in zip(times, times[1:])][skip:]


def _wait_for_steps(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float) -> None:
    """Block until the background training has logged ``n`` steps (so it is in its loop)."""
    deadline = time.monotonic() + timeout
    path = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file() and sum('"loss"' in line for line in path.open()) >= n:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the background training in {run_dir} did not start")


def measure(tmp: Path, shards: Path, threads: str, condition: str, args) -> float:
    """Median step seconds of one training run under ``condition``."""
    run_dir = tmp / f"{threads}-{condition}"
    other = None
    if condition == "busy":
        other = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    elif condition == "train":
        other_dir = tmp / f"{threads}-{condition}-other"
        other = subprocess.Popen(
            _train_cmd(other_dir, shards, threads, 100_000),
            env=_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_steps(other_dir, 2, other, timeout=120)
    try:
        proc = subprocess.Popen(
            _train_cmd(run_dir, shards, threads, args.steps),
            env=_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, err = proc.communicate(timeout=args.timeout)
            if proc.returncode != 0:
                raise RuntimeError(err[-2000:])
        except subprocess.TimeoutExpired:  # so slow that it ran out of time: use what it did
            proc.kill()
            proc.communicate()
    finally:
        if other is not None:
            other.kill()
            other.wait()
    gaps = _step_times(run_dir, args.skip) if (run_dir / "metrics.jsonl").is_file() else []
    return statistics.median(gaps) if gaps else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--skip", type=int, default=3, help="warm-up steps left out")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per measured run")
    ap.add_argument("--settings", default="default,auto")
    ap.add_argument("--conditions", default="quiet,busy,train")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from vjepa.demo.pretrain import write_demo_corpus

        shards = write_demo_corpus(tmp / "demo", quick=True)[0]["train"]
        results: dict[tuple[str, str], float] = {}
        for setting in args.settings.split(","):
            threads = str(cores) if setting == "default" else setting
            for condition in args.conditions.split(","):
                results[setting, condition] = measure(tmp, shards, threads, condition, args)
                print(f"{setting:8s} {condition:6s} {results[setting, condition] * 1e3:8.1f} ms/step",
                      flush=True)  # fmt: skip
    print(f"\ncores={cores} steps={args.steps} (median of steps {args.skip + 2}..{args.steps})")
    print("setting  quiet ms  busy ms (x quiet)  train ms (x quiet)")
    for setting in args.settings.split(","):
        q = results.get((setting, "quiet"))
        cells = [f"{q * 1e3:8.1f}" if q else "       -"]
        for condition in ("busy", "train"):
            t = results.get((setting, condition))
            cells.append(f"{t * 1e3:8.1f} ({t / q:4.2f}x)" if t and q else "        -        ")
        print(f"{setting:8s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
