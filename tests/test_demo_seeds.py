"""`vjepa demo --seeds N`: the spread of every probe and gap over seeds, next to each run's
own intervals."""

from __future__ import annotations

import json

import pytest

from vjepa.cli import main
from vjepa.demo.seeds import format_spread, spread


def _result(pre: float, rnd: float) -> dict:
    comp = {
        "a_top1": pre,
        "b_top1": rnd,
        "a_ci95": [pre - 5, pre + 5],
        "b_ci95": [rnd - 5, rnd + 5],
        "gap": pre - rnd,
    }
    return {"comparison": {"linear": comp}, "surprise": {"pretrained": 60.0}}


def test_spread_reports_mean_min_max_and_the_runs() -> None:
    summary = spread({0: _result(95.2, 24.8), 1: _result(71.0, 24.7), 2: _result(80.0, 30.0)})
    linear = summary["probes"]["linear"]
    assert linear["pretrained"] == {"mean": 82.067, "min": 71.0, "max": 95.2}
    assert linear["gap"]["min"] == pytest.approx(46.3) and linear["gap"]["max"] == 70.4
    assert linear["runs"][1]["pretrained_ci95"] == [66.0, 76.0]
    assert summary["surprise_pretrained"]["mean"] == pytest.approx(60.0)
    text = format_spread(summary)
    assert "over 3 seeds" in text and "pretrained 82.1 (71.0-95.2)" in text
    assert "seed 1: pretrained 71.0 [66.0, 76.0]" in text


def test_seeds_must_be_positive(capsys) -> None:
    assert main(["demo", "--seeds", "0", "--out", "unused"]) == 2


@pytest.mark.slow
def test_quick_demo_over_two_seeds(tmp_path) -> None:
    out = tmp_path / "seeds"
    assert main(["demo", "--quick", "--seeds", "2", "--out", str(out), "run.trackers=[]"]) == 0
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1]
    for kind in ("attentive", "linear", "knn"):
        p = summary["probes"][kind]
        assert p["pretrained"]["min"] <= p["pretrained"]["mean"] <= p["pretrained"]["max"]
        assert set(p["runs"]) == {"0", "1"}
    for seed in (0, 1):
        assert (out / f"seed{seed}" / "demo_results.json").is_file()
