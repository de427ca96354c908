"""`vjepa surprise`: violation of expectation (Garrido et al. 2025, "Intuitive physics
understanding emerges from self-supervised pretraining on natural videos").

A pretrained V-JEPA predicts the features of future frames from past ones; a video that breaks
object permanence or continuity should make that prediction worse. For each video:

1. slide the model's clip window (``num_frames`` frames, every ``data.frame_step``-th source
   frame) over it, ``surprise.stride`` source frames at a time;
2. in each window the context is the tokens of the first ``surprise.context_frames`` frames
   (context encoder), the targets the tokens of the frames after them (target encoder on the
   whole window, layer-normed as in training);
3. surprise of a window = mean L1 between the predictor's output and those targets;
4. a video's score = the max over its windows (``surprise.score: mean`` for the mean).

A pair counts as right when its impossible video is the more surprising (a tie counts half);
``report.json`` has ``pairwise_accuracy`` (percent) with its 95 % Wilson interval, both
scores' accuracies, ``by_category`` and every video's surprise curve; ``surprise.png`` plots
the curves of a few pairs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from vjepa.config import Config, ConfigError, save_config, to_dict
from vjepa.eval.surprise.pairs import Pair, read_pairs
from vjepa.eval.surprise.report import (
    compare_surprise,
    format_report,
    plain,
    plot_surprise,
    score_pairs,
)
from vjepa.eval.surprise.score import (
    SurpriseModel,
    check_context,
    load_surprise_model,
    video_surprise,
)
from vjepa.train.faults import hold_run_folder


def run_surprise(cfg: Config, model: SurpriseModel | None = None) -> dict[str, Any]:
    """Score every pair of ``surprise.pairs``; writes report.json, surprise.png, config.yaml.

    ``model``: score with this model instead of loading ``surprise.model`` (tests, notebooks).
    """
    s = cfg.surprise
    if not s.pairs:
        raise ConfigError("surprise.pairs is not set (a CSV: possible,impossible[,category])")
    pairs = read_pairs(s.pairs)  # CSV errors before any model is loaded
    with hold_run_folder(cfg.run.dir):
        return _run_surprise(cfg, pairs, model)


def _run_surprise(cfg: Config, pairs: list[Pair], model: SurpriseModel | None) -> dict[str, Any]:
    s = cfg.surprise
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model if model is not None else load_surprise_model(cfg)
    check_context(cfg, model)
    model.jepa.to(device)
    run_dir = Path(cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    results: dict[Path, dict] = {}
    for pair in pairs:
        for video in (pair.possible, pair.impossible):
            if video not in results:
                results[video] = video_surprise(model, video, cfg, device)
    report = {
        "model": model.source,
        "target_mode": model.target_mode,
        "score": s.score,
        **score_pairs(pairs, results, s.score),
        "window": {
            "num_frames": model.num_frames,
            "frame_step": cfg.data.frame_step,
            "context_frames": s.context_frames,
            "stride": s.stride,
            "img_size": model.img_size,
            "mask_index": s.mask_index,
        },
        "curves": {str(k): v for k, v in results.items()},
        "config": to_dict(cfg),
    }
    plot_surprise(pairs, results, run_dir / "surprise.png", num=s.plot_pairs)
    path = run_dir / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=plain))
    tmp.replace(path)
    print(format_report(report))
    return report


def surprise_vs_random(cfg: Config) -> dict[str, Any]:
    """``surprise.model`` and the same architecture at random init, on the same pairs.

    Writes ``run.dir/pretrained`` and ``run.dir/random`` (one report each) and returns
    ``{"pretrained": report, "random": report, "comparison": compare_surprise(...)}``; prints
    both tables and the verdict. ``model.*`` / ``data.*`` must describe ``surprise.model``'s
    architecture (the demo passes its pretraining config's keys) for the floor to be fair.
    """
    out = Path(cfg.run.dir)
    reports = {}
    mode = cfg.surprise.target_mode  # the floor is scored as the pretrained model is
    for name, model in (("pretrained", cfg.surprise.model), ("random", "random")):
        sub = dataclasses.replace(
            cfg,
            run=dataclasses.replace(cfg.run, dir=str(out / name)),
            surprise=dataclasses.replace(cfg.surprise, model=model, target_mode=mode),
        )
        reports[name] = run_surprise(sub)
        mode = reports[name]["target_mode"]
    cmp = compare_surprise(reports["pretrained"], reports["random"])
    verdict = "significant" if cmp["significant"] else "NOT significant"
    print(
        f"pretrained {cmp['a_accuracy']:.1f} % vs random {cmp['b_accuracy']:.1f} %: gap "
        f"{cmp['gap']:+.1f} points, {verdict} at 5 % (McNemar p = {cmp['p_value']:.3g}, "
        f"{cmp['a_only_right']} vs {cmp['b_only_right']} pairs only one gets right)"
    )
    return {**reports, "comparison": cmp}
