"""`vjepa demo world --seeds N`: plan success over training seeds, on the same val tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import vjepa
from vjepa.cli import main
from vjepa.demo.seeds import TASK_KEYS, format_world_spread, world_spread
from vjepa.world.collect import collect

TASKS = {"env": "vjepa/TwoRooms-v0", "tasks": "val", "first_task_seed": 1_500_000, "episodes": 50}


def _report(**rates: float) -> dict:
    methods = {
        name: {"success_rate": rate, "success_rate_ci95": [rate / 2, (100 + rate) / 2]}
        for name, rate in rates.items()
    }
    return {**TASKS, "success_rate": rates["model"], "methods": methods}


def test_world_spread_per_method_over_seeds() -> None:
    reports = {
        0: _report(model=96.0, random=0.0, oracle=82.0),
        1: _report(model=88.0, random=0.0, oracle=82.0),
        2: _report(model=100.0, random=0.0, oracle=82.0),
    }
    summary = world_spread(reports)
    assert summary["tasks"] == TASKS and summary["seeds"] == [0, 1, 2]
    model = summary["methods"]["model"]
    assert model["success_rate"] == {"mean": 94.667, "min": 88.0, "max": 100.0}
    assert model["runs"][1] == {"success_rate": 88.0, "success_rate_ci95": [44.0, 94.0]}
    assert summary["methods"]["oracle"]["success_rate"] == {"mean": 82.0, "min": 82.0, "max": 82.0}
    text = format_world_spread(json.loads(json.dumps(summary)))  # as read back from seeds.json
    assert "over 3 training seeds, on the same 50 val tasks" in text
    row = next(line for line in text.splitlines() if line.startswith("model"))
    assert row.split()[1:4] == ["94.7", "(88.0-100.0)", "96.0"] and "88.0 [44.0, 94.0]" in row


def test_world_spread_refuses_reports_on_other_tasks() -> None:
    other = _report(model=90.0, random=0.0)
    other["first_task_seed"] = 1_000_000  # the dev split
    with pytest.raises(ValueError, match="seed 1 planned on other tasks"):
        world_spread({0: _report(model=96.0, random=0.0), 1: other})


def test_world_seeds_must_be_positive(tmp_path: Path) -> None:
    assert main(["demo", "world", "--seeds", "0", "--out", str(tmp_path / "w")]) == 2
    assert not (tmp_path / "w").exists()


def test_world_demo_refuses_trajectories_collected_otherwise(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    collect("vjepa/TwoRooms-v0", out / "trajectories", episodes=2, steps=4, progress=False)
    assert main(["demo", "world", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'episodes': 2" in err and "'episodes': 20" in err and "remove it" in err
    assert not (out / "encoder").exists()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_quick_world_demo_over_two_seeds(tmp_path: Path, capsys) -> None:
    out = tmp_path / "wseeds"
    assert main(["demo", "world", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1]
    runs = {s: out / f"seed{s}" for s in (0, 1)}
    reports = {s: json.loads((d / "plan" / "report.json").read_text()) for s, d in runs.items()}

    # The same val tasks for both seeds: same split and task seeds, same start states.
    assert summary["tasks"]["tasks"] == "val" and summary["tasks"]["episodes"] == 2
    for key in TASK_KEYS:
        assert reports[0][key] == reports[1][key] == summary["tasks"][key], key
    episodes = {s: _jsonl(d / "plan" / "episodes.jsonl") for s, d in runs.items()}
    starts = [{(e["method"], e["task"]): e["states"][0] for e in episodes[s]} for s in (0, 1)]
    assert starts[0] == starts[1] and len(starts[0]) == 2 * len(reports[0]["methods"])
    # ... and the same planner draws: random actions walk the same paths.
    walks = [[e["states"] for e in episodes[s] if e["method"] == "random"] for s in (0, 1)]
    assert walks[0] == walks[1]
    # One collection, shared by the seeds.
    assert (out / "trajectories" / "manifest.json").is_file()
    assert not (runs[0] / "trajectories").exists()

    # The seed drives both trainings: each stage recorded it, and the models differ.
    for s, d in runs.items():
        for stage in ("encoder", "world"):
            assert yaml.safe_load((d / stage / "config.yaml").read_text())["run"]["seed"] == s
    models = [vjepa.load_world_model(d / "world").state_dict() for d in runs.values()]
    assert models[0].keys() == models[1].keys()
    assert not all(torch.equal(models[0][k], models[1][k]) for k in models[0])

    # The spread is the per-seed reports' success rates, recomputed.
    assert list(summary["methods"]) == list(reports[0]["methods"])
    for name, m in summary["methods"].items():
        rates = [reports[s]["methods"][name]["success_rate"] for s in (0, 1)]
        assert m["success_rate"] == {
            "mean": round(sum(rates) / 2, 3),
            "min": round(min(rates), 3),
            "max": round(max(rates), 3),
        }, name
        for s in (0, 1):
            ci = reports[s]["methods"][name]["success_rate_ci95"]
            assert m["runs"][str(s)] == {"success_rate": rates[s], "success_rate_ci95": ci}
    printed = capsys.readouterr().out
    assert "over 2 training seeds" in printed and "random_model" in printed
