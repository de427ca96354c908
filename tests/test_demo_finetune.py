"""`vjepa demo --finetune --quick`: fine-tuned pretrained vs fine-tuned random init vs the
frozen attentive probe, on the same val clips, with intervals and timings."""

from __future__ import annotations

import json

import pytest

from vjepa.cli import main


@pytest.mark.slow
def test_quick_finetune_demo(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--finetune", "--quick", "--out", str(out), "run.trackers=[]"]) == 0
    printed = capsys.readouterr().out
    for words in ("fine-tuned pretrained", "fine-tuned random-init", "frozen attentive probe"):
        assert words in printed, words
    assert printed.count("95 % CI") >= 4 and printed.count("McNemar on 36 paired clips") == 2

    results = json.loads((out / "finetune_results.json").read_text())
    assert results["split"] == "val" and results["num_val"] == 36 and results["quick"] is True
    assert set(results["top1"]) == {"pretrained", "random", "probe"}
    for name, folder in (("pretrained", "finetune_pretrained"), ("random", "finetune_random"),
                         ("probe", "probe_pretrained_attentive")):  # fmt: skip
        report = json.loads((out / folder / "report.json").read_text())
        assert report["top1"] == results["top1"][name]
        lo, hi = results["top1_ci95"][name]
        assert lo <= report["top1"] <= hi
        assert report["num_val"] == 36 and report["num_train"] == 48
    pre = json.loads((out / "finetune_pretrained" / "report.json").read_text())
    rand = json.loads((out / "finetune_random" / "report.json").read_text())
    # the pretrained run started from the demo's pretraining, the other from random init
    assert pre["backbone"]["path"] == str(out / "pretrain")
    assert rand["backbone"]["path"] == "random" and rand["backbone"]["model"] == "tiny_cpu"
    assert pre["max_steps"] == rand["max_steps"] == 20
    for key in ("finetuned_vs_random", "finetuned_vs_probe"):
        cmp = results[key]
        assert cmp["test"] == "mcnemar" and cmp["num_paired"] == 36
        assert cmp["a_top1"] == results["top1"]["pretrained"]
    assert set(results["seconds"]) == {
        "corpus_and_pretrain", "finetune_pretrained", "finetune_random", "probe_attentive",
    }  # fmt: skip
    assert all(v > 0 for v in results["seconds"].values())


def test_finetune_demo_refuses_seeds_and_world(capsys) -> None:
    assert main(["demo", "--finetune", "--seeds", "2"]) == 2
    assert "--finetune" in capsys.readouterr().err
