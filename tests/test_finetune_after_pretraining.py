"""Issue 23's fine-tune test: after a short full fine-tune on the demo corpus, the encoder
pretrained by the session's short demo pretraining (conftest.py pan_pretraining, shared with
test_probe_run.py::test_probe_after_pretraining) beats the same architecture fine-tuned from
random init, paired on the same val clips (exact McNemar, p < 0.05)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vjepa.config import load_config
from vjepa.demo.finetune import FINETUNE_CONFIG, finetune_overrides
from vjepa.eval.probe.report import compare_reports, format_comparison
from vjepa.train.finetune import finetune

# configs/finetune/demo_cpu.yaml cut to FT_STEPS steps, reporting the last checkpoint (no dev
# split here, no checkpoint choice). FT_STEPS was chosen on a dev split of the same corpus (seed
# 3, 50 clips per class, never the val clips asserted on), over fine-tune seeds (run.seed) 0-3,
# top-1 pretrained vs random init:
#   100 steps: 66.0/16.7, 42.3/20.3, 32.7/17.3, 40.7/15.0 (all p <= 3e-7)
#   200 steps: 82.0/40.0, 73.0/76.0, 76.7/17.0, 69.3/82.3 (seed 3: random init wins, p = 4e-5)
#   400 steps: 85.7/81.0, 85.3/85.7, 88.3/80.3, 89.0/83.3 (seed 1: p = 1.0)
# The random init sits at chance for about 100 steps, then takes off at a seed-dependent step;
# this short a pretraining buys mostly a head start (at 400 steps a lead of -0.3 to +8 points).
# 100 steps is where the win held for every seed. Measured on val (seed 0, 2 cores, ~13 s for
# both fine-tunes): 66.3 % vs 18.3 %, McNemar 178 / 34, p = 9.6e-25.
FT_STEPS = 100
FT_OVERRIDES = (
    f"train.max_steps={FT_STEPS}",
    f"train.checkpoint_every={FT_STEPS}",
    "train.keep_best=",
    "finetune.eval_every=0",
    "run.trackers=[]",
)


@pytest.mark.slow
def test_finetuned_pretrained_beats_finetuned_random_init(tmp_path: Path, pan_pretraining: dict):
    cfg, run_dir = pan_pretraining["cfg"], pan_pretraining["run_dir"]
    shards = {**pan_pretraining["shards"], "dev": ""}  # no dev split: the last step is reported
    reports = {}
    for name, backbone in (("pretrained", str(run_dir)), ("random", "random")):
        over = finetune_overrides(cfg, tmp_path / name, backbone, shards, "val", quick=False)
        reports[name] = finetune(
            load_config(FINETUNE_CONFIG, [*over, *FT_OVERRIDES], command="finetune")
        )
    pre, rand = reports["pretrained"], reports["random"]
    # the same val clips, the same budget; only the encoder's starting weights differ
    assert pre["predictions"]["keys"] == rand["predictions"]["keys"] and pre["num_val"] == 300
    assert pre["backbone"]["path"] == str(run_dir) and rand["backbone"]["path"] == "random"
    assert pre["checkpoint"]["step"] == rand["checkpoint"]["step"] == FT_STEPS
    cmp = compare_reports(pre, rand)
    print(format_comparison(cmp, ("fine-tuned pretrained", "fine-tuned random-init")))
    top1 = {k: r["top1"] for k, r in reports.items()}
    assert cmp["test"] == "mcnemar" and cmp["num_paired"] == 300, cmp
    assert cmp["gap"] > 0 and cmp["p_value"] < 0.05, (top1, cmp)
