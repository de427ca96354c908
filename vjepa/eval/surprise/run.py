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

import copy
import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vjepa.config import Config, ConfigError, PretrainRoot, save_config, to_dict
from vjepa.errors import UsageError
from vjepa.stats import binomial_p, wilson_percent

PAIRS_HEADER = ("possible", "impossible")
"""Required CSV columns (in this order); an optional third column is ``category``."""


class PairsError(UsageError):
    """A bad pairs CSV; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    """One possible / impossible pair of videos."""

    possible: Path
    impossible: Path
    category: str
    line: int
    """Line of the CSV it came from (1 = header)."""


def read_pairs(path: str | Path) -> list[Pair]:
    """Read a pairs CSV: header ``possible,impossible[,category]``, paths relative to the CSV.

    Every problem (missing file, wrong header, a row with too few or too many columns, a
    missing video) is a :class:`PairsError` naming the line; all rows are checked first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"surprise.pairs: {path}: no such file")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise PairsError(f"{path}: empty; expected a header 'possible,impossible[,category]'")
    header = tuple(c.strip() for c in rows[0])
    if header not in (PAIRS_HEADER, (*PAIRS_HEADER, "category")):
        raise PairsError(
            f"{path} line 1: header {','.join(header)!r} is not 'possible,impossible' or "
            "'possible,impossible,category'"
        )
    pairs = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # blank line
        if len(row) != len(header):
            raise PairsError(
                f"{path} line {line}: {len(row)} columns, the header has {len(header)} "
                f"({','.join(header)})"
            )
        possible, impossible = (path.parent / row[i].strip() for i in range(2))
        for name, video in (("possible", possible), ("impossible", impossible)):
            if not video.is_file():
                raise PairsError(f"{path} line {line}: {name} video {video} not found")
        category = row[2].strip() if len(row) > 2 else "all"
        pairs.append(Pair(possible, impossible, category or "all", line))
    if not pairs:
        raise PairsError(f"{path}: no pairs after the header")
    return pairs


# ----------------------------------------------------------------------------------------
# The model: context encoder, target encoder, predictor
# ----------------------------------------------------------------------------------------


@dataclass
class SurpriseModel:
    """What scoring needs: both encoders, the predictor and the clip geometry they take."""

    encoder: nn.Module  # context encoder: [B,3,T,H,W] + masks -> [B,K,D]
    target_encoder: nn.Module  # [B,3,T,H,W] -> [B,N,D]
    predictor: nn.Module  # (ctx [B,Kc,D], ctx_idx, tgt_idx, mask_index) -> [B,Kt,D]
    num_frames: int
    img_size: int
    patch_size: int
    tubelet_size: int
    source: str

    def eval_(self) -> SurpriseModel:
        for m in (self.encoder, self.target_encoder, self.predictor):
            m.eval().requires_grad_(False)
        return self


def load_surprise_model(cfg: Config) -> SurpriseModel:
    """``surprise.model``: ``random`` (the config's architecture, seeded by run.seed), one of
    our run / checkpoint / export folders (its saved predictor), or an official V-JEPA file."""
    source = cfg.surprise.model
    if source == "random":
        from vjepa.jepa.model import build_jepa

        jepa = build_jepa(PretrainRoot(run=cfg.run, data=cfg.data, mask=cfg.mask, model=cfg.model))
        enc = jepa.target_encoder
        return SurpriseModel(
            encoder=jepa.encoder,
            target_encoder=enc,
            predictor=jepa.predictor,
            num_frames=cfg.data.frames_per_clip,
            img_size=cfg.data.crop_size,
            patch_size=enc.patch_size,
            tubelet_size=enc.tubelet_size,
            source="random",
        ).eval_()
    from vjepa.artifacts.sources import source_kind

    if source_kind(source) == "official":
        return _official(cfg, source).eval_()
    return _ours(cfg, source).eval_()


def _geometry(encoder: nn.Module) -> dict[str, int]:
    return {
        "num_frames": encoder.num_frames,
        "img_size": encoder.img_size,
        "patch_size": encoder.patch_size,
        "tubelet_size": encoder.tubelet_size,
    }


def _ours(cfg: Config, source: str) -> SurpriseModel:
    """A run / checkpoint / export folder of ours: target encoder, its predictor, context."""
    from vjepa.artifacts.official import load_state_strict
    from vjepa.artifacts.sources import (
        ExportSourceError,
        build_encoder_from_arch,
        build_predictor_from_arch,
        read_source,
    )

    heads = cfg.surprise.num_heads
    loaded = read_source(source, which="target", num_heads=heads, with_extras=True)
    if "predictor" not in loaded.extras or loaded.predictor_arch is None:
        raise ExportSourceError(
            f"surprise.model: {source} holds no predictor; surprise needs encoder + predictor "
            "(a pretraining run / checkpoint folder, or an export made with its predictor)"
        )
    target = build_encoder_from_arch(loaded.arch)
    load_state_strict(target, loaded.state, f"{source} (target encoder)")
    pred_arch = dict(loaded.predictor_arch)
    if cfg.surprise.pred_num_heads is not None:
        pred_arch["heads"] = cfg.surprise.pred_num_heads
    predictor = build_predictor_from_arch(pred_arch)
    load_state_strict(predictor, loaded.extras["predictor"], f"{source} (predictor)")
    try:  # the context (online) encoder, as in training; else the target encoder
        ctx = read_source(source, which="context", num_heads=heads)
        context = build_encoder_from_arch(ctx.arch)
        load_state_strict(context, ctx.state, f"{source} (context encoder)")
    except ExportSourceError:
        context = target
    return SurpriseModel(context, target, predictor, **_geometry(target), source=str(source))


def _official(cfg: Config, source: str) -> SurpriseModel:
    """An official V-JEPA / V-JEPA 2 file: head counts from surprise.num_heads / pred_num_heads,
    else the official sizes' counts, else head dim 64."""
    from vjepa.artifacts.official import (
        build_from_official,
        default_heads,
        load_state_strict,
        read_official,
    )

    ckpt = read_official(source)
    if ckpt.predictor is None:
        raise ConfigError(f"surprise.model: {source} holds no predictor")
    arch = ckpt.arch
    heads = cfg.surprise.num_heads
    if heads is None:
        heads = default_heads(arch.width, arch.pos_embed) or max(1, arch.width // 64)
    pred_heads = cfg.surprise.pred_num_heads
    # Unknown predictor widths get head dim 64 too (build_from_official would reuse `heads`).
    if (
        pred_heads is None
        and arch.pred_width is not None
        and default_heads(arch.width, arch.pos_embed) is None
    ):
        pred_heads = max(1, arch.pred_width // 64)
    target, predictor = build_from_official(ckpt, num_heads=heads, pred_num_heads=pred_heads)
    context = target
    if ckpt.encoder is not None:
        context = copy.deepcopy(target)
        load_state_strict(context, ckpt.encoder, f"{source} (context encoder)")
    return SurpriseModel(context, target, predictor, **_geometry(target), source=str(source))


# ----------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------


def window_starts(num_source_frames: int, window: int, frame_step: int, stride: int) -> list[int]:
    """First source frame of every window that fits: 0, stride, 2*stride, ..."""
    span = (window - 1) * frame_step + 1  # source frames one window covers
    return list(range(0, num_source_frames - span + 1, stride))


def context_target_indices(
    grid: tuple[int, int, int], context_frames: int, tubelet: int
) -> tuple[Tensor, Tensor]:
    """Flat token indices of the first ``context_frames`` frames and of the rest: [Kc], [Kt]."""
    t, h, w = grid
    split = (context_frames // tubelet) * h * w  # tokens are ordered (time, row, column)
    n = t * h * w
    return torch.arange(split), torch.arange(split, n)


def _check_context(cfg: Config, model: SurpriseModel) -> int:
    c, tub, frames = cfg.surprise.context_frames, model.tubelet_size, model.num_frames
    if c % tub or not 0 < c < frames:
        raise ConfigError(
            f"surprise.context_frames must be a multiple of the tubelet size ({tub}) within "
            f"(0, {frames}) for this model's {frames}-frame window, got {c}"
        )
    return c


@torch.no_grad()
def window_surprise(
    model: SurpriseModel, clips: Tensor, context_frames: int, mask_index: int = 0
) -> Tensor:
    """Surprise of each window ``clips`` [W, 3, T, H, W] (ImageNet-normalised) -> [W]."""
    from vjepa.jepa.losses import normalize_targets
    from vjepa.jepa.masks import apply_masks
    from vjepa.models.encoder import token_grid

    W, _, T, H, Wd = clips.shape
    grid = token_grid(T, H, Wd, model.patch_size, model.tubelet_size)
    ctx, tgt = context_target_indices(grid, context_frames, model.tubelet_size)
    ctx_idx = ctx.to(clips.device).expand(W, -1)  # [W, Kc]
    tgt_idx = tgt.to(clips.device).expand(W, -1)  # [W, Kt]
    targets = apply_masks(normalize_targets(model.target_encoder(clips)), tgt_idx)  # [W, Kt, D]
    z = model.encoder(clips, masks=ctx_idx)  # [W, Kc, D]
    pred = model.predictor(z, ctx_idx, tgt_idx, mask_index=mask_index)  # [W, Kt, D]
    return (pred - targets).abs().mean(dim=(1, 2))  # [W]


def _load_video(path: Path, cfg: Config, img_size: int) -> Tensor:
    """All frames of ``path``, short side resized and centre-cropped: float [3, F, S, S]."""
    from vjepa.data.augment import eval_transform
    from vjepa.data.decode import open_video

    with open_video(path.read_bytes(), backend=cfg.data.decoder) as reader:
        frames = reader.get_frames(range(reader.num_frames))  # [F, H, W, 3] uint8
    return eval_transform(frames, crop_size=img_size)[0]  # [3, F, S, S]


def video_surprise(
    model: SurpriseModel, path: Path, cfg: Config, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Surprise curve of one video: ``{"frames": [...], "surprise": [...], "max", "mean"}``.

    ``frames[i]`` is the source frame where window i's targets start (the first predicted frame).
    """
    s = cfg.surprise
    step = cfg.data.frame_step
    video = _load_video(path, cfg, model.img_size)  # [3, F, S, S]
    starts = window_starts(video.shape[1], model.num_frames, step, s.stride)
    if not starts:
        need = (model.num_frames - 1) * step + 1
        raise UsageError(
            f"{path}: {video.shape[1]} frames, a {model.num_frames}-frame window at "
            f"data.frame_step={step} needs {need}"
        )
    offsets = torch.arange(model.num_frames) * step  # [T]
    curve: list[float] = []
    for i in range(0, len(starts), s.batch_size):
        idx = torch.tensor(starts[i : i + s.batch_size])[:, None] + offsets  # [W, T]
        clips = video[:, idx].permute(1, 0, 2, 3, 4).to(device)  # [W, 3, T, S, S]
        curve += window_surprise(model, clips, s.context_frames, s.mask_index).tolist()
    return {
        "frames": [st + s.context_frames * step for st in starts],
        "surprise": [round(v, 6) for v in curve],
        "max": max(curve),
        "mean": sum(curve) / len(curve),
    }


def _accuracy(right: list[float]) -> dict[str, Any]:
    n = len(right)
    k = sum(right)
    return {
        "pairwise_accuracy": round(100.0 * k / n, 3) if n else math.nan,
        "ci95": wilson_percent(k, n),
        "num_pairs": n,
    }


def _right(possible: float, impossible: float) -> float:
    """1 when the impossible video is the more surprising, 0.5 on a tie, else 0."""
    return 1.0 if impossible > possible else 0.5 if impossible == possible else 0.0


def score_pairs(pairs: list[Pair], results: dict[Path, dict], score: str) -> dict[str, Any]:
    """Pairwise accuracy overall and by category, for the max and the mean score."""
    out: dict[str, Any] = {}
    per_pair = []
    for pair in pairs:
        a, b = results[pair.possible], results[pair.impossible]
        per_pair.append(
            {
                "line": pair.line,
                "category": pair.category,
                "possible": str(pair.possible),
                "impossible": str(pair.impossible),
                "possible_max": a["max"],
                "impossible_max": b["max"],
                "possible_mean": a["mean"],
                "impossible_mean": b["mean"],
                "right_max": _right(a["max"], b["max"]),
                "right_mean": _right(a["mean"], b["mean"]),
            }
        )
    main = f"right_{score}"
    overall = _accuracy([p[main] for p in per_pair])
    out |= overall
    right = sum(p[main] for p in per_pair)
    # against chance (50 %): ties are split, so round to whole pairs for the exact test
    out["p_value_vs_chance"] = binomial_p(int(round(right)), len(per_pair))
    for other in ("max", "mean"):
        acc = _accuracy([p[f"right_{other}"] for p in per_pair])
        out[f"pairwise_accuracy_{other}"] = acc["pairwise_accuracy"]
        out[f"ci95_{other}"] = acc["ci95"]
    out["ties"] = sum(p[main] == 0.5 for p in per_pair)
    cats = sorted({p["category"] for p in per_pair})
    out["by_category"] = {
        c: {
            **_accuracy([p[main] for p in per_pair if p["category"] == c]),
            "pairwise_accuracy_mean": _accuracy(
                [p["right_mean"] for p in per_pair if p["category"] == c]
            )["pairwise_accuracy"],
            "pairwise_accuracy_max": _accuracy(
                [p["right_max"] for p in per_pair if p["category"] == c]
            )["pairwise_accuracy"],
        }
        for c in cats
    }
    out["pairs"] = per_pair
    return out


def plot_surprise(
    pairs: list[Pair], results: dict[Path, dict], out_path: Path, num: int = 4
) -> Path:
    """Surprise over time (one panel per pair) for ``num`` pairs, categories taken in turn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cat: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_cat.setdefault(pair.category, []).append(pair)
    chosen: list[Pair] = []  # round robin over the categories, so each one is shown
    for i in range(max(len(v) for v in by_cat.values())):
        chosen += [v[i] for v in by_cat.values() if i < len(v)]
    chosen = chosen[: max(1, num)]
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, pair in zip(axes.flat, chosen):
        for video, label, style in (
            (pair.possible, "possible", "-"),
            (pair.impossible, "impossible", "--"),
        ):
            r = results[video]
            ax.plot(r["frames"], r["surprise"], style, marker=".", label=label)
        ax.set_title(f"{pair.category} (line {pair.line})", fontsize=9)
        ax.set_xlabel("first predicted frame", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("surprise (L1)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def format_report(report: dict[str, Any]) -> str:
    """A few lines for stdout: overall and per-category accuracy with intervals."""
    lo, hi = report["ci95"]
    lines = [
        f"surprise  model {report['model']}  pairs {report['num_pairs']}  score {report['score']}",
        f"pairwise accuracy {report['pairwise_accuracy']:6.2f} %  (95 % CI {lo:.1f}-{hi:.1f}; "
        f"max {report['pairwise_accuracy_max']:.1f} %, mean {report['pairwise_accuracy_mean']:.1f}"
        f" %; p vs chance {report['p_value_vs_chance']:.3g})",
    ]
    for cat, r in report["by_category"].items():
        lo, hi = r["ci95"]
        lines.append(
            f"  {cat:<12} {r['pairwise_accuracy']:6.2f} %  (95 % CI {lo:.1f}-{hi:.1f}, "
            f"n={r['num_pairs']})"
        )
    return "\n".join(lines)


def compare_surprise(a: dict[str, Any] | str | Path, b: dict[str, Any] | str | Path) -> dict:
    """Pairwise accuracy of surprise report ``a`` vs ``b`` on the same pairs (e.g. pretrained
    vs random): exact McNemar test on the pairs exactly one of them gets right (ties, counted
    half in the accuracy, are left out of the test). Reports or report.json paths."""
    from vjepa.stats import mcnemar_exact

    a, b = (json.loads(Path(r).read_text()) if not isinstance(r, dict) else r for r in (a, b))
    key = f"right_{a['score']}"
    ra = {(p["possible"], p["impossible"]): p[key] for p in a["pairs"]}
    rb = {(p["possible"], p["impossible"]): p[key] for p in b["pairs"]}
    if set(ra) != set(rb):
        raise ValueError("the two surprise reports were run on different pairs")
    only_a = sum(ra[k] == 1.0 and rb[k] == 0.0 for k in ra)
    only_b = sum(rb[k] == 1.0 and ra[k] == 0.0 for k in ra)
    p = mcnemar_exact(only_a, only_b)
    return {
        "a_accuracy": a["pairwise_accuracy"],
        "b_accuracy": b["pairwise_accuracy"],
        "a_ci95": a["ci95"],
        "b_ci95": b["ci95"],
        "gap": round(a["pairwise_accuracy"] - b["pairwise_accuracy"], 3),
        "num_pairs": len(ra),
        "a_only_right": only_a,
        "b_only_right": only_b,
        "p_value": p,
        "significant": p < 0.05,
    }


def run_surprise(cfg: Config, model: SurpriseModel | None = None) -> dict[str, Any]:
    """Score every pair of ``surprise.pairs``; writes report.json, surprise.png, config.yaml.

    ``model``: score with this model instead of loading ``surprise.model`` (tests, notebooks).
    """
    s = cfg.surprise
    if not s.pairs:
        raise ConfigError("surprise.pairs is not set (a CSV: possible,impossible[,category])")
    pairs = read_pairs(s.pairs)  # CSV errors before any model is loaded
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model if model is not None else load_surprise_model(cfg)
    _check_context(cfg, model)
    for m in (model.encoder, model.target_encoder, model.predictor):
        m.to(device)
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
    tmp.write_text(json.dumps(report, indent=2, default=_plain))
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
    for name, model in (("pretrained", cfg.surprise.model), ("random", "random")):
        sub = dataclasses.replace(
            cfg,
            run=dataclasses.replace(cfg.run, dir=str(out / name)),
            surprise=dataclasses.replace(cfg.surprise, model=model),
        )
        reports[name] = run_surprise(sub)
    cmp = compare_surprise(reports["pretrained"], reports["random"])
    verdict = "significant" if cmp["significant"] else "NOT significant"
    print(
        f"pretrained {cmp['a_accuracy']:.1f} % vs random {cmp['b_accuracy']:.1f} %: gap "
        f"{cmp['gap']:+.1f} points, {verdict} at 5 % (McNemar p = {cmp['p_value']:.3g}, "
        f"{cmp['a_only_right']} vs {cmp['b_only_right']} pairs only one gets right)"
    )
    return {**reports, "comparison": cmp}


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
