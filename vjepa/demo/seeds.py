"""`vjepa demo --seeds N` and `vjepa demo world --seeds N`: a demo over training seeds, and
its spread.

Both run their demo once per seed ``0 .. N-1`` in ``<out>/seed<s>`` (each run resumes as the
demo does), then give the mean, min and max over the seeds of each number next to every run's
own 95 % interval: one run's interval covers its val sample (clips, tasks), not where
training lands. Written to ``<out>/seeds.json`` and printed as a table.

- :func:`run_seeds` (vjepa.demo.pretrain.run_demo): ``run.seed`` drives the pretraining init,
  masks, data order and the probes; per probe, the pretrained and random-init top-1 and their
  gap.
- :func:`run_world_seeds` (vjepa.demo.world.run_world_demo): the seed drives the encoder
  pretraining and the world-model training (init, masks, data order) only. The trajectories
  are collected once, with the demo's fixed seed (the world config's ``run.seed``, 0), into
  ``<out>/trajectories`` and shared by every seed. Planning keeps its seed too: every seed
  plans on the same val tasks (``plan.task_seed``) with the same planner draws, so the rows
  that do not train (random actions, the oracle, the random-init model) come out the same for
  every seed and the model's rows spread by training alone. Per method of plan's report
  (model, flat, random, random_model, oracle, ...), the success rate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vjepa.demo.pretrain import run_demo
from vjepa.demo.world import run_world_demo
from vjepa.errors import UsageError

__all__ = [
    "format_spread",
    "format_world_spread",
    "mean_min_max",
    "run_seeds",
    "run_world_seeds",
    "spread",
    "world_spread",
]

# What fixes the val tasks of a plan report: the same for every seed.
TASK_KEYS = ("env", "tasks", "first_task_seed", "episodes")


def mean_min_max(values: Sequence[float]) -> dict[str, float]:
    """Mean, min and max of ``values`` (rounded to 3 decimals)."""
    return {
        "mean": round(sum(values) / len(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def format_mmm(stats: dict[str, float]) -> str:
    """``mean (min-max)`` of :func:`mean_min_max`'s dict, one decimal."""
    return f"{stats['mean']:.1f} ({stats['min']:.1f}-{stats['max']:.1f})"


def format_ci(ci: Sequence[float]) -> str:
    return f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def _check_count(num_seeds: int) -> None:
    if num_seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {num_seeds}")


def _finish(out: Path, summary: dict[str, Any], table: str) -> dict[str, Any]:
    """Print ``table``, write ``out/seeds.json``; returns ``summary``."""
    print()
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(summary, indent=2))
    return summary


# ----------------------------------------------------------------------------------------
# The pretraining demo
# ----------------------------------------------------------------------------------------


def spread(runs: dict[int, dict]) -> dict[str, Any]:
    """Per probe: mean / min / max of pretrained, random and gap over the seeds' demo results
    (``run_demo``'s dicts by seed), and each seed's top-1s with their 95 % intervals."""
    kinds = list(next(iter(runs.values()))["comparison"])
    out: dict[str, Any] = {"seeds": sorted(runs), "probes": {}}
    for kind in kinds:
        comps = {s: runs[s]["comparison"][kind] for s in sorted(runs)}
        out["probes"][kind] = {
            "pretrained": mean_min_max([c["a_top1"] for c in comps.values()]),
            "random": mean_min_max([c["b_top1"] for c in comps.values()]),
            "gap": mean_min_max([c["gap"] for c in comps.values()]),
            "runs": {
                s: {
                    "pretrained": c["a_top1"],
                    "pretrained_ci95": c["a_ci95"],
                    "random": c["b_top1"],
                    "random_ci95": c["b_ci95"],
                    "gap": c["gap"],
                }
                for s, c in comps.items()
            },
        }
    surprise = [runs[s]["surprise"]["pretrained"] for s in sorted(runs) if "surprise" in runs[s]]
    if surprise:
        # already in percent (demo_results.json): no * 100 here
        out["surprise_pretrained"] = mean_min_max(surprise)
    return out


def format_spread(summary: dict[str, Any]) -> str:
    """A table: per probe, mean (min-max) over seeds, then each run with its interval."""
    n = len(summary["seeds"])
    lines = [f"top-1 % over {n} seeds: mean (min-max); per run: value [95 % interval]"]
    for kind, p in summary["probes"].items():
        cells = [f"{name} {format_mmm(p[name])}" for name in ("pretrained", "random", "gap")]
        lines.append(f"{kind}: " + ", ".join(cells))
        for seed, r in p["runs"].items():
            lines.append(
                f"  seed {seed}: pretrained {r['pretrained']:.1f} {format_ci(r['pretrained_ci95'])}, "
                f"random {r['random']:.1f} {format_ci(r['random_ci95'])}, gap {r['gap']:+.1f}"
            )
    return "\n".join(lines)


def run_seeds(
    out: Path,
    num_seeds: int,
    overrides: Sequence[str] = (),
    quick: bool = False,
    corpus: str = "pan",
    eval_split: str = "val",
) -> dict[str, Any]:
    """The demo for seeds ``0 .. num_seeds-1`` into ``out/seed<s>``; returns :func:`spread`."""
    _check_count(num_seeds)
    out = Path(out)
    runs = {
        seed: run_demo(
            out / f"seed{seed}",
            overrides=[*overrides, f"run.seed={seed}"],
            quick=quick,
            corpus=corpus,
            eval_split=eval_split,
        )
        for seed in range(num_seeds)
    }
    summary = spread(runs)
    return _finish(out, summary, format_spread(summary))


# ----------------------------------------------------------------------------------------
# The world demo
# ----------------------------------------------------------------------------------------


def world_spread(reports: dict[int, dict]) -> dict[str, Any]:
    """Per method of plan's reports (``report.json``'s dicts by seed): mean / min / max of the
    success rate (%) over the seeds and each seed's rate with its 95 % interval; ``tasks``: the
    val tasks (:data:`TASK_KEYS`), which must be the same for every seed."""
    seeds = sorted(reports)
    tasks = {k: reports[seeds[0]].get(k) for k in TASK_KEYS}
    for seed in seeds[1:]:
        other = {k: reports[seed].get(k) for k in TASK_KEYS}
        if other != tasks:
            raise ValueError(f"seed {seed} planned on other tasks than seed {seeds[0]}: {other}")
    names = list(dict.fromkeys(m for s in seeds for m in reports[s]["methods"]))
    methods = {}
    for name in names:
        runs = {s: reports[s]["methods"][name] for s in seeds if name in reports[s]["methods"]}
        methods[name] = {
            "success_rate": mean_min_max([r["success_rate"] for r in runs.values()]),
            "runs": {
                s: {"success_rate": r["success_rate"], "success_rate_ci95": r["success_rate_ci95"]}
                for s, r in runs.items()
            },
        }
    return {"seeds": seeds, "tasks": tasks, "methods": methods}


def format_world_spread(summary: dict[str, Any]) -> str:
    """A table: per method, mean (min-max) of the success rate over the seeds, then a column
    per seed with its rate and interval."""
    seeds, t = summary["seeds"], summary["tasks"]
    lines = [
        f"success % over {len(seeds)} training seeds, on the same {t['episodes']} "
        f"{t['tasks']} tasks of {t['env']} (first task seed {t['first_task_seed']}): "
        "mean (min-max); per seed: value [95 % interval]",
        f"{'method':<14} {'mean (min-max)':<18}" + "".join(f" {f'seed {s}':<20}" for s in seeds),
    ]
    for name, m in summary["methods"].items():
        cells = []
        for s in seeds:
            r = m["runs"].get(s) or m["runs"].get(str(s))
            cell = f"{r['success_rate']:.1f} {format_ci(r['success_rate_ci95'])}" if r else "-"
            cells.append(f" {cell:<20}")
        lines.append(f"{name:<14} {format_mmm(m['success_rate']):<18}" + "".join(cells))
    return "\n".join(line.rstrip() for line in lines)


def run_world_seeds(
    out: Path,
    num_seeds: int,
    *,
    env: str | None = None,
    overrides: Sequence[str] = (),
    quick: bool = False,
    pretrained: bool = True,
) -> dict[str, Any]:
    """The world demo for training seeds ``0 .. num_seeds-1`` into ``out/seed<s>``, on the
    trajectories of ``out/trajectories``; returns :func:`world_spread`. ``pretrained=False``:
    every seed's world model starts from a random-init encoder (``--no-pretrain``)."""
    _check_count(num_seeds)
    out = Path(out)
    reports = {
        seed: run_world_demo(
            out / f"seed{seed}",
            env=env,
            overrides=list(overrides),
            quick=quick,
            train_seed=seed,
            trajectories=out / "trajectories",
            pretrained=pretrained,
        )
        for seed in range(num_seeds)
    }
    summary = world_spread(reports)
    return _finish(out, summary, format_world_spread(summary))
