"""`vjepa surprise`: violation-of-expectation scoring on real mp4 pairs.

Known answers come from a hand-built "persistence" model (its predictor says every future
token equals the last context frame's token at that place): a static video is never
surprising to it, one that turns to noise is. The CLI runs use real models (random init and
a short real pretraining) and real pair CSVs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa.cli import main
from vjepa.config import PretrainRoot, load_config
from vjepa.data.encode import encode_frames
from vjepa.eval.surprise.pairs import read_pairs
from vjepa.eval.surprise.report import compare_surprise
from vjepa.eval.surprise.run import run_surprise, surprise_vs_random
from vjepa.eval.surprise.score import (
    SurpriseModel,
    context_target_indices,
    window_starts,
    window_surprise,
)
from vjepa.jepa.masks import apply_masks
from vjepa.jepa.model import JEPA, build_jepa

REPO = Path(__file__).resolve().parents[1]
SIZE, FRAMES = 32, 16


def _mp4(path: Path, frames: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"crf": "18", "preset": "fast", "threads": "1"}
    path.write_bytes(encode_frames(frames, fps=8.0, options=options))
    return path.name


def _static(seed: int) -> np.ndarray:
    """One smooth random image held for all frames: uint8 [T, H, W, 3]."""
    g = np.random.default_rng(seed)
    coarse = g.uniform(30, 220, size=(4, 4, 3))
    img = np.kron(coarse, np.ones((SIZE // 4, SIZE // 4, 1)))
    return np.repeat(img[None], FRAMES, axis=0).astype(np.uint8)


def _noise_after_midpoint(seed: int) -> np.ndarray:
    frames = _static(seed).copy()
    g = np.random.default_rng(seed + 100)
    frames[FRAMES // 2 :] = g.integers(0, 256, size=frames[FRAMES // 2 :].shape)
    return frames


class _PixelEncoder(nn.Module):
    """Token = the flattened pixels of its tubelet patch (no learning): [B, N, 3*t*p*p]."""

    def __init__(self, patch: int = 8, tubelet: int = 2, frames: int = 8, size: int = SIZE):
        super().__init__()
        self.patch_size, self.tubelet_size, self.num_frames, self.img_size = (
            patch,
            tubelet,
            frames,
            size,
        )

    def forward(self, x: Tensor, masks: Tensor | list[Tensor] | None = None):
        if isinstance(masks, list):
            return [self(x, m) for m in masks]  # [B, K_i, D] each
        B, C, T, H, W = x.shape
        t, p = self.tubelet_size, self.patch_size
        x = x.reshape(B, C, T // t, t, H // p, p, W // p, p)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, (T // t) * (H // p) * (W // p), -1)
        return x if masks is None else apply_masks(x, masks)  # [B, N|K, D]


class _Persistence(nn.Module):
    """Predicts each target token as the (layer-normed) context token at the same place in
    the last context time step: a world where nothing changes."""

    def __init__(self, tokens_per_frame: int):
        super().__init__()
        self.hw = tokens_per_frame

    def forward(self, ctx: Tensor, ctx_idx: Tensor, tgt_idx: Tensor, mask_index: int = 0):
        last = ctx[:, -self.hw :]  # [B, h*w, D]: the last context time step
        reps = tgt_idx.shape[1] // self.hw
        return F.layer_norm(last.repeat(1, reps, 1), (ctx.shape[-1],))  # [B, Kt, D]


def _persistence_model() -> SurpriseModel:
    enc = _PixelEncoder()
    hw = (SIZE // 8) ** 2
    jepa = JEPA(enc, _Persistence(hw), target_encoder=enc)
    return SurpriseModel(jepa, 8, SIZE, 8, 2, source="persistence")


def _pairs_csv(tmp_path: Path, rows: list[str], header: str = "possible,impossible,category"):
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _cfg(tmp_path: Path, pairs: Path, *extra: str):
    return load_config(
        None,
        [
            f"run.dir={tmp_path / 'run'}",
            f"surprise.pairs={pairs}",
            "run.trackers=[]",
            "data.frames_per_clip=8",
            "data.frame_step=1",
            f"data.crop_size={SIZE}",
            "model.name=tiny_cpu",
            "model.patch_size=8",
            "model.tubelet_size=2",
            "model.pred_width=48",
            "model.pred_depth=2",
            "model.pred_heads=4",
            "surprise.context_frames=4",
            "surprise.stride=2",
            *extra,
        ],
    )


def test_windows_and_token_split() -> None:
    # 16 frames, window of 8 at step 1, stride 2: starts 0, 2, 4, 6, 8
    assert window_starts(16, 8, 1, 2) == [0, 2, 4, 6, 8]
    assert window_starts(16, 8, 2, 1) == [0, 1]  # a window spans 15 source frames
    assert window_starts(7, 8, 1, 1) == []
    ctx, tgt = context_target_indices((4, 2, 3), context_frames=4, tubelet=2)
    assert ctx.tolist() == list(range(12)) and tgt.tolist() == list(range(12, 24))


def test_surprise_is_the_training_l1_on_the_same_tensors(tmp_path: Path) -> None:
    # The surprise score and the training loss share JEPA.predict_targets: on one window with
    # the training objective's context / target split, surprise == the loss path's l1 term.
    cfg = _cfg(tmp_path, tmp_path / "unused.csv")
    jepa = build_jepa(PretrainRoot(run=cfg.run, data=cfg.data, mask=cfg.mask, model=cfg.model))
    jepa = jepa.eval()
    model = SurpriseModel(jepa, 8, SIZE, 8, 2, source="random")
    clip = torch.randn(1, 3, 8, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    ctx, tgt = context_target_indices((4, SIZE // 8, SIZE // 8), context_frames=4, tubelet=2)
    with torch.no_grad():
        loss = jepa(clip, [ctx[None]], [tgt[None]]).terms["l1"]
    score = window_surprise(model, clip, context_frames=4)
    assert score.shape == (1,)
    assert score[0].item() == pytest.approx(loss.item(), rel=1e-6)


def test_a_delta_trained_predictor_is_scored_against_delta_targets(tmp_path: Path) -> None:
    # objective.target_mode=delta trains the predictor on the change since the last context
    # step; its surprise must be that same training l1 (here the context is 2 time steps, so
    # the reference is step 1), not the l1 against raw targets.
    from vjepa.config.sections import ObjectiveConfig

    cfg = _cfg(tmp_path, tmp_path / "unused.csv")
    base = build_jepa(PretrainRoot(run=cfg.run, data=cfg.data, mask=cfg.mask, model=cfg.model))
    delta = ObjectiveConfig(target_mode="delta")
    jepa = JEPA(base.encoder, base.predictor, delta, time_steps=4, delta_ref=1).eval()
    clip = torch.randn(1, 3, 8, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    ctx, tgt = context_target_indices((4, SIZE // 8, SIZE // 8), context_frames=4, tubelet=2)
    with torch.no_grad():
        loss = jepa(clip, [ctx[None]], [tgt[None]]).terms["l1"]
    model = SurpriseModel(JEPA(base.encoder, base.predictor), 8, SIZE, 8, 2, "run", "delta")
    assert window_surprise(model, clip, context_frames=4)[0].item() == pytest.approx(
        loss.item(), rel=1e-6
    )
    model.target_mode = "raw"
    assert window_surprise(model, clip, context_frames=4)[0].item() != pytest.approx(
        loss.item(), rel=1e-3
    )


def test_known_answer_with_a_persistence_model(tmp_path: Path) -> None:
    rows = []
    for i, cat in enumerate(["noise", "noise", "noise"]):
        a = _mp4(tmp_path / f"static_{i}.mp4", _static(i))
        b = _mp4(tmp_path / f"noisy_{i}.mp4", _noise_after_midpoint(i))
        rows.append(f"{a},{b},{cat}")
    # a pair of one video with itself is a tie (counted half) by construction
    rows.append("static_0.mp4,static_0.mp4,same")
    cfg = _cfg(tmp_path, _pairs_csv(tmp_path, rows), "surprise.plot_pairs=4")
    report = run_surprise(cfg, model=_persistence_model())
    assert report["num_pairs"] == 4
    assert report["by_category"]["noise"]["pairwise_accuracy"] == 100.0
    assert report["by_category"]["same"]["pairwise_accuracy"] == 50.0 and report["ties"] == 1
    assert report["pairwise_accuracy"] == pytest.approx(100 * 3.5 / 4)
    lo, hi = report["ci95"]
    assert lo < report["pairwise_accuracy"] < hi
    curves = report["curves"]
    static = curves[str(tmp_path / "static_0.mp4")]
    noisy = curves[str(tmp_path / "noisy_0.mp4")]
    # windows start at 0, 2, 4, 6, 8; targets from frame start + 4
    assert static["frames"] == noisy["frames"] == [4, 6, 8, 10, 12]
    assert static["max"] < 0.05  # nothing changes: only codec noise is left
    # the first window predicts frames 4-7 (all static, same as the static video); the
    # others reach into the noise from frame 8 on
    assert noisy["surprise"][0] == pytest.approx(static["surprise"][0], abs=0.02)
    assert min(noisy["surprise"][1:]) > 0.3
    assert report["pairs"][0]["right_max"] == 1.0 and report["pairs"][0]["right_mean"] == 1.0
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["pairwise_accuracy"] == report["pairwise_accuracy"]
    same = compare_surprise(saved, report)
    assert same["gap"] == 0 and same["p_value"] == 1.0 and not same["significant"]
    assert (tmp_path / "run" / "surprise.png").stat().st_size > 5000


def _bad_csv_exit(tmp_path: Path, capsys, text: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code = main(["surprise", str(REPO / "configs/surprise/demo.yaml"), f"surprise.pairs={path}"])
    assert code == 2
    return capsys.readouterr().err


def test_csv_errors_name_the_line(tmp_path: Path, capsys) -> None:
    _mp4(tmp_path / "a.mp4", _static(0))
    err = _bad_csv_exit(tmp_path, capsys, "possible,impossible\na.mp4,a.mp4\na.mp4,gone.mp4\n")
    assert "line 3" in err and "impossible video" in err and "gone.mp4" in err
    err = _bad_csv_exit(tmp_path, capsys, "possible,impossibel\na.mp4,a.mp4\n")
    assert "line 1" in err and "header" in err
    err = _bad_csv_exit(tmp_path, capsys, "possible,impossible\na.mp4,a.mp4,extra\n")
    assert "line 2" in err and "3 columns" in err
    err = _bad_csv_exit(tmp_path, capsys, "possible,impossible,category\n")
    assert "no pairs" in err
    code = main(
        ["surprise", str(REPO / "configs/surprise/demo.yaml"), f"surprise.pairs={tmp_path}/x.csv"]
    )
    assert code == 2 and "x.csv" in capsys.readouterr().err
    rows = read_pairs(
        _pairs_csv(tmp_path, ["a.mp4,a.mp4", "", "a.mp4,a.mp4"], "possible,impossible")
    )
    assert [p.line for p in rows] == [2, 4] and rows[0].category == "all"


def _generator():
    from vjepa.data import surprise_pairs

    return surprise_pairs


def test_pair_generator_renders_each_violation(tmp_path: Path) -> None:
    gen = _generator()
    for i, cat in enumerate(gen.CATEGORIES):
        scene = gen.draw_scene(gen.scene_rng(0, i), size=32, num_frames=16)
        v = scene.violation_frame
        aa, ab = gen.render(scene, cat, "aa"), gen.render(scene, cat, "ab")
        bb, ba = gen.render(scene, cat, "bb"), gen.render(scene, cat, "ba")
        # same frames before the violation, different after it; bb / ba mirror aa / ab
        assert np.array_equal(aa[:v], ab[:v]) and np.array_equal(bb[:v], ba[:v])
        assert np.array_equal(ab[v:], bb[v:]) and np.array_equal(ba[v:], aa[v:])
        changed = (np.abs(aa[v:].astype(int) - ab[v:].astype(int)).max(axis=-1) > 50).mean()
        assert changed > 0.003, (cat, changed)  # the object's pixels change clearly
        if cat == "colour":  # grey turns red: the red channel is kept, green drops
            red = ab[v:].astype(int)
            assert (red[..., 0] - red[..., 1]).max() > 100
            assert np.abs(aa[..., 0].astype(int) - aa[..., 1]).max() <= 1
    csv_path = gen.write_pairs(tmp_path / "pairs", 6, size=32, num_frames=16)
    pairs = read_pairs(csv_path)
    assert len(pairs) == 6
    assert [p.category for p in pairs] == [
        "vanish",
        "vanish",
        "teleport",
        "teleport",
        "colour",
        "colour",
    ]
    assert all(p.possible.stat().st_size > 500 for p in pairs)
    stamp = csv_path.stat().st_mtime_ns
    assert gen.write_pairs(tmp_path / "pairs", 6, size=32, num_frames=16) == csv_path
    assert csv_path.stat().st_mtime_ns == stamp  # complete: not written again


@pytest.mark.parametrize("index", range(4))
def test_occluded_vanish_is_balanced_and_hidden(index: int) -> None:
    """IntPhys-style vanish: the bar is in all four renderings, the switch happens while the
    object is fully behind it (no frame shows a pop), and the videos differ only after the bar
    has passed the object's place."""
    gen = _generator()
    scene = gen.draw_scene(gen.scene_rng(3, index), size=64, num_frames=32)
    v = scene.violation_frame
    aa, ab, bb, ba = (
        gen.render(scene, "occluded", s).astype(int) for s in ("aa", "ab", "bb", "ba")
    )
    plain = gen.render(scene, "vanish", "aa").astype(int)
    bar = (np.abs(bb - gen.render(scene, "vanish", "bb")).max(axis=-1) > 30).mean(axis=(1, 2))
    assert 0.3 < bar[v] < 0.9 and bar[0] + bar[-1] < bar[v]  # a wide bar that passes by
    # around the switch the object is hidden: possible and impossible are pixel-identical there
    assert np.array_equal(aa[: v + 2], ab[: v + 2]) and np.array_equal(bb[: v + 2], ba[: v + 2])
    # ... and the object is gone from ab (and there in ba) once the bar has moved on
    later = np.abs(aa[v + 2 :] - ab[v + 2 :]).max(axis=-1) > 50  # [T', H, W]
    assert later[-1].mean() > 0.01 and np.array_equal(ab[v:], bb[v:])
    # the unoccluded vanish of the same scene shows the pop AT the violation frame
    pop = np.abs(plain[v] - gen.render(scene, "vanish", "ab")[v].astype(int)).max(axis=-1)
    assert (pop > 50).mean() > 0.01


def test_cli_random_and_pretrained_models(tmp_path: Path, capsys) -> None:
    from train_utils import make_shards, tiny_overrides

    from vjepa.train.pretrain import pretrain

    gen = _generator()
    csv_path = gen.write_pairs(tmp_path / "pairs", 4, size=SIZE, num_frames=FRAMES)
    common = [
        f"surprise.pairs={csv_path}",
        "data.frames_per_clip=8",
        "data.frame_step=1",
        f"data.crop_size={SIZE}",
        "model.pred_width=48",
        "surprise.stride=4",
        "surprise.batch_size=2",
    ]
    config = str(REPO / "configs/surprise/demo.yaml")
    out = tmp_path / "random"
    assert main(["surprise", config, "surprise.model=random", f"run.dir={out}", *common]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_pairs"] == 4 and report["model"] == "random"
    assert set(report["by_category"]) == {"vanish", "teleport"}
    # the reported accuracy is recomputed from the per-pair maxima
    right = [1.0 if p["impossible_max"] > p["possible_max"] else 0.0 for p in report["pairs"]]
    assert report["pairwise_accuracy"] == pytest.approx(100 * sum(right) / 4)
    curve = report["curves"][str(csv_path.parent / "videos/scene_000_vanish_aa.mp4")]
    assert curve["frames"] == [4, 8, 12] and all(v > 0 for v in curve["surprise"])
    assert "pairwise accuracy" in capsys.readouterr().out
    # the same command on a real (2-step) pretraining run folder: encoder + predictor load
    shards = make_shards(tmp_path / "shards", per_class=2, per_shard=12)
    run = tmp_path / "pre"
    pretrain(load_config(None, tiny_overrides(run, shards, "train.max_steps=2")))
    out = tmp_path / "pretrained"
    assert main(["surprise", config, f"surprise.model={run}", f"run.dir={out}", *common]) == 0
    pre = json.loads((out / "report.json").read_text())
    assert pre["model"] == str(run) and pre["num_pairs"] == 4
    assert pre["target_mode"] == "raw"  # the run's objective.target_mode (auto)
    assert pre["curves"] != report["curves"]
    # an official V-JEPA file (the reference code's tiny checkpoint: 4-frame window, 3 heads)
    official = REPO / "tests/fixtures/reference/jepa_tiny/checkpoint.pt"
    out = tmp_path / "official"
    heads = ["surprise.num_heads=3", "surprise.pred_num_heads=3", "surprise.context_frames=2"]
    args = ["surprise", config, f"surprise.model={official}", f"run.dir={out}", *heads]
    assert main([*args, *common]) == 0
    off = json.loads((out / "report.json").read_text())
    assert off["window"]["num_frames"] == 4 and off["window"]["img_size"] == 64
    assert (
        len(off["curves"][str(csv_path.parent / "videos/scene_000_vanish_aa.mp4")]["frames"]) == 4
    )
    # pretrained vs random in one call, as the demo runs it
    both = surprise_vs_random(
        load_config(config, [f"surprise.model={run}", f"run.dir={tmp_path / 'vs'}", *common])
    )
    assert both["random"]["curves"] == report["curves"]  # the same random floor as above
    assert (
        both["comparison"]["num_pairs"] == 4 and (tmp_path / "vs/pretrained/report.json").is_file()
    )
    assert "McNemar" in capsys.readouterr().out
    # a bad context length is a config error naming the key
    bad = ["surprise.model=random", "surprise.context_frames=3"]
    code = main(["surprise", config, f"run.dir={out}", *bad, *common])
    assert code == 2 and "surprise.context_frames" in capsys.readouterr().err


def test_compare_surprise_is_paired() -> None:
    def rep(rights: list[float]) -> dict:
        pairs = [
            {"possible": f"p{i}", "impossible": f"i{i}", "right_max": r}
            for i, r in enumerate(rights)
        ]
        acc = 100 * sum(rights) / len(rights)
        return {"score": "max", "pairs": pairs, "pairwise_accuracy": acc, "ci95": [0, 100]}

    a = rep([1.0] * 90 + [0.0] * 10)
    b = rep([1.0] * 45 + [0.0] * 45 + [0.5] * 10)
    cmp = compare_surprise(a, b)
    assert (cmp["a_only_right"], cmp["b_only_right"]) == (45, 0)
    assert cmp["significant"] and cmp["gap"] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="different pairs"):
        compare_surprise(a, rep([1.0] * 99))
