"""A `vjepa finetune` run as an artifact: `vjepa export` writes encoder + head + labels, and
vjepa.load_classifier gives back the run's logits; the run (and the export) is a valid
source of vjepa.load_encoder and probe.backbone (the fine-tuned encoder)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_utils import ROOT, finetune_overrides, run_env

import vjepa
from vjepa.artifacts.export import export
from vjepa.artifacts.sources import ExportSourceError
from vjepa.config import load_config
from vjepa.data.augment import normalize
from vjepa.data.loader import make_eval_loader
from vjepa.eval.probe.features import load_backbone
from vjepa.train.checkpoint import load_checkpoint
from vjepa.train.finetune import build_model, finetune, predict_views

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["down", "expand", "left", "right", "shrink", "up"]


@pytest.fixture(scope="module")
def run(pan_corpus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """A 12-step fine-tune that keeps its best dev checkpoint: (config, report)."""
    run_dir = tmp_path_factory.mktemp("ft") / "run"
    extra = ("train.max_steps=12", "train.checkpoint_every=6", "finetune.eval_every=6",
             "train.keep_best=dev_top1", "finetune.randaug_ops=2")  # fmt: skip
    cfg = load_config(None, finetune_overrides(run_dir, pan_corpus, *extra), command="finetune")
    return cfg, finetune(cfg)


def _run_model(cfg, report: dict) -> torch.nn.Module:
    """The classifier the run reported on, rebuilt the way its report was made."""
    model = build_model(cfg)
    ckpt = load_checkpoint(Path(report["checkpoint"]["path"]))
    model.encoder.load_state_dict(ckpt["encoder"])
    model.head.load_state_dict(ckpt["head"])
    return model.eval()


def _val_clips(cfg, n: int = 6) -> torch.Tensor:
    loader = make_eval_loader(cfg.finetune.val_shards, data_cfg=cfg.data, batch_size=n)
    video = next(iter(loader))["video"]  # [n, 1, C, T, H, W]
    video = video.flatten(0, 1)
    return normalize(video) if video.dtype == torch.uint8 else video  # [n, C, T, H, W]


def test_export_and_load_classifier_give_the_runs_logits(run, tmp_path: Path) -> None:
    cfg, report = run
    run_dir = Path(cfg.run.dir)
    desc = json.loads((run_dir / "classifier.json").read_text())
    assert desc["kind"] == "classifier" and desc["head"]["kind"] == "attentive"
    assert desc["architecture"]["width"] == 96 and desc["architecture"]["patch_size"] == 8

    out = tmp_path / "export"
    done = subprocess.run(
        [sys.executable, "-m", "vjepa", "export", str(run_dir), "--out", str(out)],
        cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "head.safetensors", "model.safetensors",
    ]  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["classifier"]["label_names"] == NAMES
    assert config["source"]["kind"] == "vjepa-finetune"
    # the export holds the checkpoint the report scored (the best on dev), not just the last
    assert config["source"]["step"] == report["checkpoint"]["step"]
    assert config["source"]["path"] == str(Path(report["checkpoint"]["path"]).resolve())
    assert "linear.weight" in load_file(str(out / "head.safetensors"))

    x = _val_clips(cfg)
    with torch.no_grad():
        expected = _run_model(cfg, report)(x)  # [6, 6]
        for source in (out, run_dir, Path(report["checkpoint"]["path"])):
            model = vjepa.load_classifier(source)
            assert model.label_names == NAMES
            torch.testing.assert_close(model(x), expected, rtol=0, atol=0, msg=str(source))
    # and it scores the val set exactly as the report did
    keys, _, probs = predict_views(vjepa.load_classifier(out), cfg.finetune.val_shards, cfg,
                                   torch.device("cpu"))  # fmt: skip
    assert keys == report["predictions"]["keys"]
    assert probs.argmax(1).tolist() == report["predictions"]["pred"]


def test_a_finetune_run_is_an_encoder_source(run) -> None:
    """load_encoder / probe.backbone on the run: the fine-tuned encoder of the reported
    checkpoint, not the backbone it started from."""
    cfg, report = run
    run_dir = Path(cfg.run.dir)
    x = _val_clips(cfg, n=2)
    with torch.no_grad():
        tokens = _run_model(cfg, report).encoder(x)  # [2, N, D]
        enc = vjepa.load_encoder(run_dir)
        torch.testing.assert_close(enc(x), tokens, rtol=0, atol=0)
        backbone, identity = load_backbone(
            str(run_dir), random_model="tiny_cpu", data_cfg=cfg.data, model_cfg=cfg.model,
            seed=0, num_heads=None, which="target",
        )  # fmt: skip
        torch.testing.assert_close(backbone(x), tokens, rtol=0, atol=0)
        start = build_model(cfg).encoder.eval()(x)  # the random init it started from
    assert not torch.allclose(start, tokens)  # fine-tuning moved it
    with pytest.raises(ExportSourceError, match="no predictor"):
        vjepa.load_encoder(run_dir, which="predictor")


def test_an_encoder_export_is_not_a_classifier(run, tmp_path: Path) -> None:
    cfg, _ = run
    out = tmp_path / "enc"
    export(Path(cfg.run.dir), out)
    (out / "head.safetensors").unlink()
    cfg_json = json.loads((out / "config.json").read_text())
    del cfg_json["classifier"]
    (out / "config.json").write_text(json.dumps(cfg_json))
    with pytest.raises(ExportSourceError, match="not a fine-tuned classifier"):
        vjepa.load_classifier(out)
    assert vjepa.load_encoder(out).config["architecture"]["width"] == 96
