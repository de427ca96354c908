"""`vjepa finetune` on the generated demo corpus (tiny model, CPU): learning, the recipe's parts,
the report, and kill-and-resume parity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_utils import ROOT, finetune_overrides, kill_after_first_checkpoint, run_env

from vjepa.config import FinetuneConfig, load_config, save_config
from vjepa.eval.probe.report import compare_reports
from vjepa.models.encoder import VisionTransformer
from vjepa.train.checkpoint import latest_checkpoint
from vjepa.train.classifier import (
    Classifier,
    drop_path_keep,
    finetune_groups,
    mix_batch,
    smoothed_targets,
)
from vjepa.train.finetune import finetune
from vjepa.train.metrics import read_metrics
from vjepa.train.optim import build_optimizer, set_schedules

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def corpus(pan_corpus: dict[str, Path]) -> dict[str, Path]:
    return pan_corpus


def _losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


def test_finetune_lowers_the_loss_and_reports_like_the_probe(
    tmp_path: Path, corpus: dict[str, Path]
) -> None:
    run_dir = tmp_path / "ft"
    cfg = load_config(
        None,
        finetune_overrides(
            run_dir, corpus, "train.max_steps=60", "train.checkpoint_every=30",
            "finetune.eval_every=20", "train.keep_best=dev_top1", "finetune.eval_clips=2",
            "finetune.mixup=0", "finetune.cutmix=0",  # mixed targets hide the fall in 60 steps
        ),
        command="finetune",
    )  # fmt: skip
    report = finetune(cfg)
    losses = _losses(run_dir)
    assert len(losses) == 60
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.95 * first, (first, last)  # measured 1.80 -> 1.61 (random init, 48 clips)
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if "dev_top1" in r]
    assert [r["step"] for r in evals] == [20, 40, 60]
    assert all(0 <= r["dev_top1"] <= 100 and r["eval_s"] > 0 for r in evals)
    # the report: the probe's fields, on the checkpoint with the best dev top-1
    best = max(evals, key=lambda r: (r["dev_top1"], -r["step"]))  # the first of the best
    assert (
        report["checkpoint"]["step"] == best["step"]
        and report["checkpoint"]["value"] == best["dev_top1"]
    )
    assert report["kind"] == "finetune" and report["num_val"] == 36 and report["num_classes"] == 6
    assert report["views"] == "8x2x1" and report["selected_on_validation"] is False
    lo, hi = report["top1_ci95"]
    assert lo <= report["top1"] <= hi
    assert report["num_correct"] == round(report["top1"] * 36 / 100)
    on_disk = json.loads((run_dir / "report.json").read_text())
    assert on_disk["top1"] == report["top1"] and len(on_disk["predictions"]["keys"]) == 36
    assert (run_dir / "confusion.png").is_file() and (run_dir / "loss.png").is_file()
    same = compare_reports(on_disk, run_dir / "report.json")  # pairs with any probe report
    assert same["test"] == "mcnemar" and same["gap"] == 0
    ckpt = latest_checkpoint(run_dir)
    assert sorted(p.name for p in ckpt.glob("*.safetensors")) == [
        "encoder.safetensors",
        "head.safetensors",
    ]
    # the encoder file holds the bare ViT keys (as an export does)
    assert "blocks.0.attn.qkv.weight" in load_file(str(ckpt / "encoder.safetensors"))


@pytest.mark.slow
def test_finetune_kill_and_resume_matches_an_uninterrupted_run(
    tmp_path: Path, corpus: dict[str, Path]
) -> None:
    steps = 24  # the whole recipe: mixup / CutMix, drop path, label smoothing, evaluation
    extra = (
        f"train.max_steps={steps}", "train.checkpoint_every=4", "train.keep_last=2",
        "finetune.eval_every=4", "train.keep_best=dev_top1", "finetune.drop_path=0.2",
    )  # fmt: skip
    config = tmp_path / "ft.yaml"
    save_config(
        load_config(
            None, finetune_overrides(tmp_path / "unused", corpus, *extra), command="finetune"
        ),
        config,
    )

    def command(run_dir: Path) -> list[str]:
        return [sys.executable, "-m", "vjepa", "finetune", str(config), f"run.dir={run_dir}"]

    def run(run_dir: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            command(run_dir), cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=180
        )

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run(straight)
    assert done.returncode == 0, done.stderr[-3000:]
    first_step = kill_after_first_checkpoint(command(killed), killed, timeout=120)
    assert 4 <= first_step < steps, "the run ended before the kill: nothing was resumed"
    again = run(killed)
    assert again.returncode == 0, again.stderr[-3000:]
    events = [r for r in read_metrics(killed / "metrics.jsonl") if "event" in r]
    assert [e["event"] for e in events] == ["start", "resume"] and events[1]["step"] == first_step

    for name in ("encoder", "head"):
        a = load_file(str(latest_checkpoint(straight) / f"{name}.safetensors"))
        b = load_file(str(latest_checkpoint(killed) / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=f"{name}.{key}")
    la = dict(enumerate(_losses(straight), start=1))
    lb = {r["step"]: r["loss"] for r in read_metrics(killed / "metrics.jsonl") if "loss" in r}
    for step in range(first_step + 1, steps + 1):
        assert lb[step] == pytest.approx(la[step], abs=1e-6), step
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (straight, killed))
    assert ra["predictions"] == rb["predictions"]
    assert ra["checkpoint"]["step"] == rb["checkpoint"]["step"]


def _tiny_classifier(depth: int = 3) -> Classifier:
    vit = VisionTransformer(img_size=16, num_frames=2, patch_size=8, tubelet_size=2, width=16,
                            depth=depth, heads=2, pos_embed="rope")  # fmt: skip
    return Classifier(vit, torch.nn.Linear(16, 4), num_classes=4, drop_path=0.2)


def test_layer_decay_scales_each_layers_lr() -> None:
    model = _tiny_classifier(depth=3)
    opt = build_optimizer(model, load_config(None).optim, groups=finetune_groups(model, 0.05, 0.5))
    set_schedules(opt, 1e-3, 0.05)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["encoder.patch_embed.proj.weight"])] == pytest.approx(1e-3 * 0.5**4)
    assert lr_of[id(named["encoder.blocks.0.attn.qkv.weight"])] == pytest.approx(1e-3 * 0.5**3)
    assert lr_of[id(named["encoder.blocks.2.mlp.fc1.weight"])] == pytest.approx(1e-3 * 0.5)
    assert lr_of[id(named["encoder.norm.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(named["head.weight"])] == pytest.approx(1e-3)
    assert wd_of[id(named["head.weight"])] == 0.05 and wd_of[id(named["head.bias"])] == 0.0
    assert len(lr_of) == len(named)  # every parameter in exactly one group


def test_drop_path_drops_whole_branches_per_clip() -> None:
    model = _tiny_classifier().eval()
    x = torch.randn(4, 3, 2, 16, 16)
    keep = drop_path_keep(model.drop_rates, 4, np.random.default_rng(0))  # [3, 2, 4]
    assert keep.shape == (3, 2, 4) and bool((keep[0] == 1).all())  # block 0: rate 0
    assert set(keep[2].unique().tolist()) <= {0.0, 1.0 / 0.8}
    with torch.no_grad():
        plain = model(x)
        ones = model(x, torch.ones(3, 2, 4))
        dropped = model(x, torch.zeros(3, 2, 4))  # every residual branch off: norm(patch + pos)
    torch.testing.assert_close(ones, plain)
    assert not torch.allclose(dropped, plain)
    vit = model.encoder
    with torch.no_grad():
        tokens = vit.norm(vit.patch_embed(x))  # rope model: no position table to add
        torch.testing.assert_close(dropped, model.head(tokens))


def test_mixup_and_cutmix_targets_are_distributions_that_follow_the_pixels() -> None:
    video = torch.arange(2.0).view(2, 1, 1, 1, 1).expand(2, 3, 2, 8, 8).contiguous()  # 0 / 1
    labels = torch.tensor([0, 2])
    target = smoothed_targets(labels, 4, 0.1)
    torch.testing.assert_close(target.sum(1), torch.ones(2))
    assert target[0, 0] == pytest.approx(0.925) and target[0, 1] == pytest.approx(0.025)
    for kind in ("mixup", "cutmix"):
        f = FinetuneConfig(
            label_smoothing=0.0,
            mixup=0.8 if kind == "mixup" else 0,
            cutmix=1.0 * (kind == "cutmix"),
        )
        mixed, soft = mix_batch(video, labels, 4, f, np.random.default_rng(3))
        share = mixed[0].mean().item()  # clip 0 is 0s: its mean is the share of clip 1
        assert 0 < share < 1
        assert soft[0, 2] == pytest.approx(share, abs=1e-6) and soft[0, 0] == pytest.approx(
            1 - share
        )
        again = mix_batch(video, labels, 4, f, np.random.default_rng(3))
        torch.testing.assert_close(again[0], mixed)  # a pure function of the generator
    f = FinetuneConfig(mix_prob=0.0)
    same, soft = mix_batch(video, labels, 4, f, np.random.default_rng(3))
    assert same is video and float(soft[1, 2]) == pytest.approx(0.925)
