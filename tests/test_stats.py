"""Intervals and significance tests behind the probe and surprise reports."""

from __future__ import annotations

import pytest

from vjepa.eval.probe.report import compare_reports, format_comparison
from vjepa.stats import (
    binomial_p,
    bootstrap_interval,
    mcnemar_exact,
    two_proportion_p,
    wilson_interval,
    wilson_percent,
)


def test_wilson_at_known_values() -> None:
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.40383, abs=1e-4) and hi == pytest.approx(0.59617, abs=1e-4)
    # closed forms at the edges: 0 of n -> upper z^2 / (n + z^2); n of n -> lower n / (n + z^2)
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    # 72 val clips at 80 %: about +-9 points, the figure
    lo, hi = wilson_interval(0.8 * 72, 72)
    assert 8.0 < 100 * (hi - lo) / 2 < 10.0
    assert wilson_percent(50, 100) == [40.38, 59.62]
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_bootstrap_matches_wilson_roughly() -> None:
    scores = [1.0] * 60 + [0.0] * 40
    lo, hi = bootstrap_interval(scores, resamples=4000, seed=0)
    wlo, whi = wilson_interval(60, 100)
    assert abs(lo - wlo) < 0.03 and abs(hi - whi) < 0.03
    assert bootstrap_interval(scores, seed=3) == bootstrap_interval(scores, seed=3)


def test_tests_of_a_difference() -> None:
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 0) == pytest.approx(0.25)
    # 60 % vs 50 % on 100 each: z = 1.4213, p = 0.155 (independent samples)
    assert two_proportion_p(60, 100, 50, 100) == pytest.approx(0.1552, abs=1e-3)
    assert two_proportion_p(600, 1000, 500, 1000) < 1e-5
    assert binomial_p(50, 100) == pytest.approx(1.0)
    assert binomial_p(60, 100) == pytest.approx(0.0569, abs=1e-3)


def _report(correct: list[bool]) -> dict:
    n = len(correct)
    return {
        "top1": 100.0 * sum(correct) / n,
        "num_val": n,
        "num_correct": sum(correct),
        "predictions": {
            "keys": [f"clip{i:03d}" for i in range(n)],
            "labels": [0] * n,
            "pred": [0 if c else 1 for c in correct],
        },
    }


def test_compare_reports_paired_and_unpaired() -> None:
    # same 200 clips: a right on 150, b right on 110, b's right clips a subset of a's
    a = _report([i < 150 for i in range(200)])
    b = _report([i < 110 for i in range(200)])
    cmp = compare_reports(a, b)
    assert cmp["test"] == "mcnemar" and cmp["num_paired"] == 200
    assert (cmp["a_only_correct"], cmp["b_only_correct"]) == (40, 0)
    assert cmp["significant"] and cmp["p_value"] < 1e-10
    assert cmp["gap"] == pytest.approx(20.0) and not cmp["intervals_overlap"]
    text = format_comparison(cmp, ("pretrained", "random"))
    assert "significant at 5 %" in text and "NOT" not in text and "McNemar" in text
    # a 2-clip gap on 72 clips is noise, paired or not
    c = _report([i < 58 for i in range(72)])
    d = _report([i < 56 for i in range(72)])
    assert not compare_reports(c, d)["significant"]
    del c["predictions"]
    unpaired = compare_reports(c, d)
    assert unpaired["test"] == "two-proportion" and not unpaired["significant"]
    assert unpaired["intervals_overlap"]
    assert "NOT significant" in format_comparison(unpaired)
