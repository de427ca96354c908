"""One row of the ablation table in docs/learning.md: pretrain, then probe on a chosen split.

Usage::

    python tools/learning_ablation.py NAME SHARDS SPLIT KINDS [key=value ...] [kind@key=value ...]

``SHARDS`` holds ``train/`` and ``SPLIT/`` shard folders (e.g. from ``vjepa demo --split dev``'s
``shards/``); ``KINDS`` is a comma list of attentive, linear, knn. Pretraining is
configs/pretrain/demo_cpu.yaml with ``key=value`` overrides on ``SHARDS/train`` (a NAME starting
with ``random`` skips it and probes the random-init encoder of the same architecture); each probe
is configs/probe/demo_<kind>.yaml, trained on ``SHARDS/train`` and evaluated on ``SHARDS/SPLIT``,
with ``kind@key=value`` overrides for that probe only. Appends one JSON line to
``runs/ablation/results.jsonl``. Choose settings on ``dev``; report ``val``.

``position`` in KINDS (``objects`` corpus only) adds the object-position probe
(vjepa.eval.probe.position): mean wrap-aware pixel error of a ridge regression of the object's centre
from each time step's tokens, fitted on train and scored on SPLIT (lower is better).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from vjepa.config import load_config
from vjepa.demo.pretrain import PRETRAIN_CONFIG, PROBE_CONFIGS, position_report, probe_overrides
from vjepa.eval.probe.run import run_probe
from vjepa.train.metrics import read_metrics
from vjepa.train.pretrain import pretrain


def main(argv: list[str]) -> dict:
    name, shards_root, split, kinds, *overrides = argv
    root = Path("runs/ablation") / name
    shards = {"train": Path(shards_root) / "train", split: Path(shards_root) / split}
    pre = [o for o in overrides if "@" not in o]
    result: dict = {"name": name, "overrides": overrides, "split": split}
    start = time.time()
    base = [f"run.dir={root / 'pretrain'}", f"data.shards={shards['train']}", "run.trackers=[]"]
    if name.startswith("random"):
        cfg = load_config(
            PRETRAIN_CONFIG, [*base, *[o for o in pre if o.startswith(("model.", "data."))]]
        )
        backbone = "random"
    else:
        cfg = load_config(PRETRAIN_CONFIG, [*base, *pre])
        backbone = str(pretrain(cfg))
        result["pretrain_s"] = round(time.time() - start, 1)
        rows = [r for r in read_metrics(Path(backbone) / "metrics.jsonl") if "loss" in r]
        result["last"] = {k: v for k, v in rows[-1].items() if isinstance(v, (int, float))}
        watch = [
            r for r in read_metrics(Path(backbone) / "metrics.jsonl") if "ctx_within_clip_std" in r
        ]
        if watch:  # the slow-feature watch of the last health step (issue 27)
            keep = ("step", "ctx_within_clip_std", "ctx_across_clip_std", "ctx_within_across_ratio",
                    "moving_token_frac", "moving_loss_share")  # fmt: skip
            result["health"] = {k: watch[-1][k] for k in keep if k in watch[-1]}
    for kind in kinds.split(","):
        if kind == "position":
            result |= position_report(cfg, backbone, "objects", split)
            continue
        over = probe_overrides(cfg, root / f"probe_{kind}_{split}", backbone, shards, split)
        over += [o.split("@", 1)[1] for o in overrides if o.startswith(kind + "@")]
        report = run_probe(load_config(PROBE_CONFIGS[kind], over))
        result[kind] = report["top1"]
    result["total_s"] = round(time.time() - start, 1)
    result["load"] = [round(v, 2) for v in os.getloadavg()]
    print("RESULT", json.dumps(result), flush=True)
    with open(Path("runs/ablation") / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
