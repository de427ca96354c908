"""The GPU benchmark's CPU dry-run path runs end to end (no figure is asserted: benchmarks)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from train_utils import ROOT, run_env


def test_bench_gpu_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_gpu.py"), "--dry-run", "--out", str(out)],
        cwd=ROOT,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["model"] == "tiny_cpu"
    for key in ("step_s", "reference_step_s", "ratio_vs_reference", "gflop_per_step", "mfu",
                "loader_clips_per_s_per_core"):  # fmt: skip
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert len(result["masks_kc_kt"]) == 2  # the two default mask generators
