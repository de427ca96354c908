"""The shipped eval configs probe with the geometry the official checkpoints were probed with.

Official values, from facebookresearch/jepa (V-JEPA, ViT-L/16 and ViT-H/16 at 224 px):

- ``configs/evals/vitl16_k400_16x8x3.yaml`` and ``vith16_k400_16x8x3.yaml``: frames_per_clip 16,
  frame_step 4, num_segments 8, num_views_per_segment 3, resolution 224, num_classes 400,
  20 epochs, lr 1e-3 (start 1e-3, final 0), weight_decay 0.01, warmup 0;
- ``configs/evals/vitl16_ssv2_16x2x3.yaml`` and ``vith16_ssv2_16x2x3.yaml``: the same with
  num_segments 2, num_classes 174.
- (``vith16_384_*``: resolution 384 for the 384-px ViT-H; facebookresearch/vjepa2
  ``configs/eval/vitl/{k400,ssv2}*.yaml``: the same 16x8x3 / 16x2x3 views at resolution 256.)

UCF101 and HMDB51 have no official V-JEPA eval config; ours use the SSv2 view geometry (16x2x3)
over the 3 official splits, which this test pins as the house protocol (docs/reproduce.md).
The YAML files are read directly, not through vjepa.config, so a config refactor cannot hide a
changed number here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "configs" / "probe"
LABELS = ROOT / "data" / "labels"

# config file -> (frames_per_clip, frame_step, crop_size, eval_clips, eval_crops)
OFFICIAL = {
    "k400_attentive.yaml": (16, 4, 224, 8, 3),  # jepa configs/evals/vitl16_k400_16x8x3.yaml
    "k400_linear.yaml": (16, 4, 224, 8, 3),  # same views, linear head (no official config)
    "k400_knn.yaml": (16, 4, 224, 8, 3),  # same views, kNN (no official config)
    "ssv2_attentive.yaml": (16, 4, 224, 2, 3),  # jepa configs/evals/vitl16_ssv2_16x2x3.yaml
    "ucf101_attentive.yaml": (16, 4, 224, 2, 3),  # house protocol: SSv2 views, 3 splits
    "hmdb51_attentive.yaml": (16, 4, 224, 2, 3),  # house protocol: SSv2 views, 3 splits
}
NUM_CLASSES = {"k400": 400, "ssv2": 174, "ucf101": 101, "hmdb51": 51}


def _load(name: str) -> dict:
    return yaml.safe_load((PROBE / name).read_text())


def test_every_shipped_eval_config_is_pinned() -> None:
    shipped = {p.name for p in PROBE.glob("*.yaml") if not p.name.startswith("demo_")}
    assert shipped == set(OFFICIAL), "a new eval config needs its official geometry here"


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_view_geometry(name: str) -> None:
    cfg = _load(name)
    frames, step, size, clips, crops = OFFICIAL[name]
    data, probe = cfg["data"], cfg["probe"]
    assert data["frames_per_clip"] == frames
    assert data["frame_step"] == step
    assert data["crop_size"] == size
    assert probe["eval_clips"] == clips  # num_segments
    assert probe["eval_crops"] == crops  # num_views_per_segment


@pytest.mark.parametrize("name", ["k400_attentive.yaml", "ssv2_attentive.yaml"])
def test_attentive_optimisation_matches_official(name: str) -> None:
    """20 epochs, lr 1e-3 cosine to 0, wd 0.01, no warmup, as in the jepa eval configs."""
    probe = _load(name)["probe"]
    assert probe["epochs"] == 20
    assert probe["lr"] == pytest.approx(1e-3)
    assert probe["weight_decay"] == pytest.approx(0.01)
    # unset = the ProbeConfig default, 0 at ea5de3b (vjepa/config.py)
    assert probe.get("warmup_epochs", 0) == 0
    assert probe["train_clips"] == probe["eval_clips"]  # attend_across_segments: true


@pytest.mark.parametrize("name", ["ucf101_attentive.yaml", "hmdb51_attentive.yaml"])
def test_three_splits(name: str) -> None:
    probe = _load(name)["probe"]
    assert probe["splits"] == [1, 2, 3]
    assert "{split}" in probe["train_shards"] and "{split}" in probe["val_shards"]


@pytest.mark.parametrize("dataset", sorted(NUM_CLASSES))
def test_label_maps(dataset: str) -> None:
    names = (LABELS / f"{dataset}.txt").read_text(encoding="utf-8").splitlines()
    assert len(names) == NUM_CLASSES[dataset]
    assert len(set(names)) == len(names) and all(n and n == n.strip() for n in names)


def test_label_map_orders() -> None:
    k400 = (LABELS / "k400.txt").read_text().splitlines()
    assert k400 == sorted(k400)  # the sorted CSV class names (formats.read_kinetics)
    assert k400[0] == "abseiling" and k400[-1] == "zumba"
    ssv2 = (LABELS / "ssv2.txt").read_text().splitlines()
    assert ssv2[0] == "Approaching something with your camera"
    assert ssv2[173] == "Wiping something off of something"
    ucf = (LABELS / "ucf101.txt").read_text().splitlines()
    # classInd.txt order (1-based there): not Python's sort ("HammerThrow" < "Hammering")
    assert ucf.index("Hammering") == 34 and ucf.index("HammerThrow") == 35
    assert ucf[36] == "HandstandPushups" and ucf[-1] == "YoYo"
    hmdb = (LABELS / "hmdb51.txt").read_text().splitlines()
    assert hmdb == sorted(hmdb)  # sorted split-file names (formats.read_hmdb51)
