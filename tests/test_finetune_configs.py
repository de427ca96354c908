"""The shipped fine-tuning configs: each loads as a `vjepa finetune` config, and its clip
geometry is that of the matching probe config (the same clips, the same val shards), with the
test views of the recipe it cites (VideoMAE: K400 16x5x3, SSv2 16x2x3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vjepa.config import load_config

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = ROOT / "configs" / "finetune"
PROBE = ROOT / "configs" / "probe"

# finetune config -> (matching probe config, eval_clips, eval_crops, hflip)
MATCH = {
    "demo_cpu.yaml": ("demo_attentive.yaml", 2, 1, False),  # motion classes: never flipped
    "k400_vitl.yaml": ("k400_attentive.yaml", 5, 3, True),  # VideoMAE test 5 x 3
    "ssv2_vitl.yaml": ("ssv2_attentive.yaml", 2, 3, False),  # VideoMAE test 2 x 3; left/right
}
GEOMETRY = ("frames_per_clip", "frame_step", "crop_size")


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_every_shipped_finetune_config_is_pinned() -> None:
    assert {p.name for p in FINETUNE.glob("*.yaml")} == set(MATCH)


@pytest.mark.parametrize("name", sorted(MATCH))
def test_loads_as_a_finetune_config(name: str) -> None:
    cfg = load_config(FINETUNE / name, command="finetune")  # an unknown key fails here
    assert cfg.finetune.val_shards and cfg.train.max_steps > cfg.optim.warmup_steps


@pytest.mark.parametrize("name", sorted(MATCH))
def test_geometry_matches_the_probe_config(name: str) -> None:
    probe_name, clips, crops, hflip = MATCH[name]
    ft, probe = _yaml(FINETUNE / name), _yaml(PROBE / probe_name)
    for key in GEOMETRY:
        assert ft["data"][key] == probe["data"][key], (name, key)
    assert ft["finetune"]["val_shards"] == probe["probe"]["val_shards"]
    assert ft["finetune"]["eval_clips"] == clips and ft["finetune"]["eval_crops"] == crops
    assert ft["data"]["hflip"] is hflip
    if "model" in probe:
        for key in ("patch_size", "tubelet_size"):
            assert ft["model"][key] == probe["model"][key], (name, key)


@pytest.mark.parametrize("name", ["k400_vitl.yaml", "ssv2_vitl.yaml"])
def test_vitl_recipe_is_videomaes(name: str) -> None:
    """VideoMAE's run_class_finetuning.py defaults and scripts, lr scaled by videos / 256."""
    cfg = load_config(FINETUNE / name, command="finetune")
    f, o = cfg.finetune, cfg.optim
    assert cfg.model.name == "large" and cfg.data.num_clips == 2  # repeated augmentation
    assert (f.layer_decay, f.drop_path, f.label_smoothing) == (0.75, 0.1, 0.1)
    assert (f.mixup, f.cutmix, f.mix_prob) == (0.8, 1.0, 1.0)
    assert (f.randaug_ops, f.randaug_magnitude, f.randaug_magnitude_std) == (4, 7.0, 0.5)
    assert o.weight_decay == o.final_weight_decay == 0.05 and o.clip_grad == 0
    videos = cfg.data.batch_size * 8  # 8 GPUs (configs/accelerate/multi_gpu_8.yaml)
    base = {"k400_vitl.yaml": 2e-3, "ssv2_vitl.yaml": 5e-4}[name]  # per 256 videos
    assert o.lr == pytest.approx(base * videos / 256)
    epochs = {"k400_vitl.yaml": 35, "ssv2_vitl.yaml": 30}[name]
    assert cfg.train.max_steps / (o.warmup_steps / 5) == pytest.approx(epochs, rel=1e-3)
