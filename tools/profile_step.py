"""Profile our pretraining step (and optionally the reference step) with torch.profiler.

Prints the operators by self CPU time, and optionally writes a Chrome trace:

    python tools/profile_step.py configs/pretrain/demo_cpu.yaml model.pos_embed=sincos
    python tools/profile_step.py --reference --trace /tmp/ref.json      # the official step

The step is the one tools/bench_reference.py times (same synthetic batch, same masks).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from bench_reference import make_steps, synthetic_batch
from torch.profiler import ProfilerActivity, profile, record_function

from vjepa.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="?", default="configs/pretrain/demo_cpu.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reference", action="store_true", help="profile the reference step")
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--sort", default="self_cpu_time_total")
    ap.add_argument("--trace", default="", help="write a Chrome trace here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, [*args.overrides, f"run.dir={tmp}", "run.trackers=[]"])
        ours, ref = make_steps(cfg, synthetic_batch(cfg))
        fn = ref if args.reference else ours
        fn()
        fn()  # warm up (allocator, first-call paths)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            for _ in range(args.steps):
                with record_function("step"):
                    fn()
    print(prof.key_averages().table(sort_by=args.sort, row_limit=args.rows))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"trace written to {args.trace}")


if __name__ == "__main__":
    main()
