"""`vjepa demo --finetune`: full fine-tuning against the frozen probe on the demo corpus.

On the corpus and the pretrained encoder of `vjepa demo` (both resumed when ``out`` already
holds them), it fine-tunes, with configs/finetune/demo_cpu.yaml (its settings were chosen on
the dev split: the README's `vjepa finetune` section), the pretrained encoder and the same
architecture at random init (the same head init, the same data order), trains the frozen
attentive probe of configs/probe/demo_attentive.yaml on the pretrained encoder, and prints the
three top-1 on ``eval_split`` (val by default) with 95 % Wilson intervals and paired McNemar
tests: fine-tuned pretrained vs fine-tuned random init, and vs the frozen probe. Every result
goes into ``out/finetune_results.json`` with the seconds each stage took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from vjepa.config import Config, load_config
from vjepa.demo.pretrain import (
    PROBE_CONFIGS,
    QUICK_STEPS,
    REPO,
    pretrain_demo,
    probe_overrides,
    write_demo_corpus,
)
from vjepa.eval.probe.report import compare_reports, format_comparison
from vjepa.eval.probe.run import run_probe
from vjepa.models.encoder import MODEL_ARCH_KEYS
from vjepa.train.finetune import finetune

FINETUNE_CONFIG = REPO / "configs" / "finetune" / "demo_cpu.yaml"


def finetune_overrides(
    cfg: Config, run_dir: Path, backbone: str, shards: dict[str, Path], split: str, quick: bool
) -> list[str]:
    """configs/finetune/demo_cpu.yaml's overrides for one backbone: the pretraining's clip
    geometry, architecture (of the random init) and seed; dev for choosing the checkpoint,
    ``split`` for the report."""
    short = [*QUICK_STEPS, "finetune.eval_every=10"] if quick else []
    return [
        f"run.dir={run_dir}",
        f"finetune.backbone={backbone}",
        f"data.shards={shards['train']}",
        f"finetune.dev_shards={shards['dev']}",
        f"finetune.val_shards={shards[split]}",
        *(f"model.{k}={getattr(cfg.model, k)}" for k in MODEL_ARCH_KEYS),
        f"data.frames_per_clip={cfg.data.frames_per_clip}",
        f"data.frame_step={cfg.data.frame_step}",
        f"data.crop_size={cfg.data.crop_size}",
        f"run.seed={cfg.run.seed}",
        *short,
    ]


def run_finetune_demo(
    out: Path,
    overrides: Sequence[str] = (),
    quick: bool = False,
    corpus: str = "pan",
    eval_split: str = "val",
) -> dict:
    """Run the fine-tuning comparison into ``out``; returns (and writes) its results.

    ``overrides`` go to the pretraining, as for `vjepa demo`; ``eval_split="dev"`` reports on
    the dev split (where settings are chosen) into separate run folders.
    """
    out = Path(out)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    shards, names = write_demo_corpus(out, corpus, quick)
    cfg, run_dir = pretrain_demo(out, shards, overrides, quick)
    seconds["corpus_and_pretrain"] = time.perf_counter() - start
    suffix = "" if eval_split == "val" else f"_{eval_split}"
    reports = {}
    for name, backbone in (("pretrained", str(run_dir)), ("random", "random")):
        start = time.perf_counter()
        over = finetune_overrides(
            cfg, out / f"finetune_{name}{suffix}", backbone, shards, eval_split, quick
        )
        reports[name] = finetune(load_config(FINETUNE_CONFIG, over, command="finetune"))
        seconds[f"finetune_{name}"] = time.perf_counter() - start
    start = time.perf_counter()
    over = probe_overrides(cfg, out / f"probe_pretrained_attentive{suffix}", str(run_dir),
                           shards, eval_split)  # fmt: skip
    if quick:
        over.append("probe.epochs=2")
    reports["probe"] = run_probe(load_config(PROBE_CONFIGS["attentive"], over))
    seconds["probe_attentive"] = time.perf_counter() - start

    vs_random = compare_reports(reports["pretrained"], reports["random"])
    vs_probe = compare_reports(reports["pretrained"], reports["probe"])
    print()
    print(
        f"Fine-tuning on the {corpus} corpus ({len(names)} classes, chance "
        f"{100.0 / len(names):.1f} %), {eval_split} split ({reports['random']['num_val']} clips), "
        "top-1 with 95 % Wilson interval:"
    )
    print(format_comparison(vs_random, ("fine-tuned pretrained", "fine-tuned random-init")))
    print(format_comparison(vs_probe, ("fine-tuned pretrained", "frozen attentive probe")))
    results = {
        "corpus": corpus,
        "split": eval_split,
        "num_val": reports["random"]["num_val"],
        "chance": round(100.0 / len(names), 3),
        "top1": {k: r["top1"] for k, r in reports.items()},
        "top1_ci95": {k: r["top1_ci95"] for k, r in reports.items()},
        "checkpoint_step": {k: reports[k]["checkpoint"]["step"] for k in ("pretrained", "random")},
        "finetuned_vs_random": vs_random,
        "finetuned_vs_probe": vs_probe,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "quick": quick,
    }
    (out / f"finetune_results{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
