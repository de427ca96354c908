"""`vjepa demo --seeds N`: the pretraining-and-probe comparison over N seeds, and its spread.

One demo run (vjepa.demo.pretrain.run_demo) per seed ``0 .. N-1`` in ``<out>/seed<s>``
(``run.seed`` drives the pretraining init, masks, data order and the probes), then the mean,
min and max of each probe's pretrained and random-init top-1 and of their gap, next to each
run's own 95 % intervals: one run's interval covers the val sample, not where pretraining lands.
Written to ``<out>/seeds.json``; every run resumes as the demo does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vjepa.demo.pretrain import run_demo
from vjepa.errors import UsageError

__all__ = ["format_spread", "run_seeds", "spread"]


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(sum(values) / len(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def spread(runs: dict[int, dict]) -> dict[str, Any]:
    """Per probe: mean / min / max of pretrained, random and gap over the seeds' demo results
    (``run_demo``'s dicts by seed), and each seed's top-1s with their 95 % intervals."""
    kinds = list(next(iter(runs.values()))["comparison"])
    out: dict[str, Any] = {"seeds": sorted(runs), "probes": {}}
    for kind in kinds:
        comps = {s: runs[s]["comparison"][kind] for s in sorted(runs)}
        out["probes"][kind] = {
            "pretrained": _stats([c["a_top1"] for c in comps.values()]),
            "random": _stats([c["b_top1"] for c in comps.values()]),
            "gap": _stats([c["gap"] for c in comps.values()]),
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
        out["surprise_pretrained"] = _stats(surprise)  # already in percent (demo_results.json)
    return out


def _ci(ci: Sequence[float]) -> str:
    return f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def format_spread(summary: dict[str, Any]) -> str:
    """A table: per probe, mean (min-max) over seeds, then each run with its interval."""
    n = len(summary["seeds"])
    lines = [f"top-1 % over {n} seeds: mean (min-max); per run: value [95 % interval]"]
    for kind, p in summary["probes"].items():
        cells = [
            f"{name} {p[name]['mean']:.1f} ({p[name]['min']:.1f}-{p[name]['max']:.1f})"
            for name in ("pretrained", "random", "gap")
        ]
        lines.append(f"{kind}: " + ", ".join(cells))
        for seed, r in p["runs"].items():
            lines.append(
                f"  seed {seed}: pretrained {r['pretrained']:.1f} {_ci(r['pretrained_ci95'])}, "
                f"random {r['random']:.1f} {_ci(r['random_ci95'])}, gap {r['gap']:+.1f}"
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
    if num_seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {num_seeds}")
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
    print()
    print(format_spread(summary))
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(summary, indent=2))
    return summary
