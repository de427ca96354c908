"""`vjepa demo`: the whole pipeline on a synthetic motion corpus, on a laptop CPU.

1. a labelled corpus generated at run time (vjepa.data.synthetic; nothing is downloaded):
   ``train`` (pretraining and probe training), ``dev`` (where every pretraining and probe
   setting of configs/pretrain/demo_cpu.yaml and configs/probe/demo_*.yaml was chosen, see
   docs/learning.md) and ``val`` (reported, never used to choose anything), each in a seeded
   random order, then shards of each;
2. a short pretraining of the tiny model (configs/pretrain/demo_cpu.yaml) on ``train``;
3. the attentive, linear and kNN probes on the pretrained encoder and on the same
   architecture at random init (the same initial weights), with 95 % Wilson intervals and a
   paired McNemar test of each gap;
4. the violation-of-expectation check (``surprise_check``, a hook for `vjepa surprise`).

``corpus="objects"`` runs the same settings on the second corpus (small objects over coloured
backgrounds, 8 classes), which was used for nothing but this check. Every step is skipped when
its output is already complete, so re-running resumes.
"""

from __future__ import annotations

import dataclasses
import json
import sysconfig
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from vjepa.artifacts.sources import trained_encoder
from vjepa.config import Config, load_config
from vjepa.data.formats import read_source
from vjepa.data.surprise_pairs import write_pairs
from vjepa.data.synthetic import STYLES, write_split
from vjepa.data.writer import write_shards
from vjepa.errors import UsageError
from vjepa.eval.probe.features import load_backbone
from vjepa.eval.probe.position import position_probe
from vjepa.eval.probe.report import compare_reports, format_comparison
from vjepa.eval.probe.run import run_probe
from vjepa.eval.surprise.run import surprise_vs_random
from vjepa.models.encoder import MODEL_ARCH_KEYS
from vjepa.train.pretrain import pretrain

_MARKER = "configs/pretrain/demo_cpu.yaml"


def resource_root() -> Path:
    """The folder holding ``configs/`` and ``data/``: the source checkout when vjepa runs from
    one (editable install, PYTHONPATH), else the copy a wheel installs in <prefix>/share/vjepa.
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / _MARKER).is_file():
        return checkout
    try:  # the installed file list knows the prefix, whatever the scheme (venv, --user, ...)
        files = metadata.distribution("vjepa").files or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.as_posix().endswith("share/vjepa/" + _MARKER):
            return Path(f.locate()).resolve().parents[2]
    return Path(sysconfig.get_path("data")) / "share" / "vjepa"


REPO = resource_root()
SAMPLE = REPO / "data" / "sample"
PRETRAIN_CONFIG = REPO / "configs" / "pretrain" / "demo_cpu.yaml"
SURPRISE_CONFIG = REPO / "configs" / "surprise" / "demo.yaml"
PROBE_CONFIGS = {
    k: REPO / "configs" / "probe" / f"demo_{k}.yaml" for k in ("attentive", "linear", "knn")
}

CORPORA: dict[str, dict[str, Any]] = {
    # clips per class of each split, and the corpus seed (the second corpus: another seed)
    "pan": {"seed": 0, "splits": {"train": 100, "dev": 50, "val": 100}},
    "objects": {"seed": 1, "splits": {"train": 75, "dev": 40, "val": 75}},
}
QUICK_SPLITS = {"train": 8, "dev": 4, "val": 6}


def write_demo_corpus(
    out: Path, corpus: str = "pan", quick: bool = False
) -> tuple[dict[str, Path], list[str]]:
    """Generate the corpus under ``out/corpus`` and its shards under ``out/shards/<split>``.

    Returns the shard folder of every split and the class names.
    """
    if corpus not in CORPORA:
        raise UsageError(f"unknown demo corpus {corpus!r}; expected one of {sorted(CORPORA)}")
    spec = CORPORA[corpus]
    splits = spec["splits"] if not quick else {k: QUICK_SPLITS[k] for k in spec["splits"]}
    folders = {}
    for split, per_class in splits.items():
        listing_path = write_split(out / "corpus", corpus, split, per_class, seed=spec["seed"])
        folder = out / "shards" / split
        folders[split] = folder
        if (folder / "manifest.json").is_file():
            continue  # complete: the manifest is written last
        listing = read_source(
            str(listing_path), fmt="list", split="train", split_id=1, root=None,
            labels_from_folders=False,
        )  # fmt: skip
        write_shards(
            listing.items, folder, prefix=split, max_count=64,
            label_names=list(STYLES[corpus]), skipped=listing.skipped,
        )  # fmt: skip
    return folders, list(STYLES[corpus])


def probe_overrides(
    cfg, run_dir: Path, backbone: str, shards: dict[str, Path], split: str
) -> list[str]:
    """The probe overrides shared by both encoders: same shards, architecture and seed.

    A run with a frozen teacher (``optim.ema == [1, 1]``, a pretrained ``objective.teacher``, or
    pixel targets) trains only its context encoder, so that is the encoder probed
    (:func:`vjepa.artifacts.sources.trained_encoder`).
    """
    encoder = trained_encoder(cfg) if backbone != "random" else "target"
    return [
        f"run.dir={run_dir}",
        f"probe.backbone={backbone}",
        f"probe.encoder={encoder}",
        f"probe.train_shards={shards['train']}",
        f"probe.val_shards={shards[split]}",
        *(f"model.{k}={getattr(cfg.model, k)}" for k in MODEL_ARCH_KEYS),
        f"data.frames_per_clip={cfg.data.frames_per_clip}",
        f"data.frame_step={cfg.data.frame_step}",
        f"data.crop_size={cfg.data.crop_size}",
        f"run.seed={cfg.run.seed}",
    ]


def position_report(cfg: Config, backbone: str, corpus: str, split: str) -> dict[str, float]:
    """The object-position probe (vjepa.eval.probe.position) of ``backbone`` (a run folder or
    ``random``) on the ``corpus`` clips of ``split``; the encoder chosen as for the class probes."""
    over = probe_overrides(cfg, Path("."), backbone, {"train": "", split: ""}, split)
    which = next(o.split("=", 1)[1] for o in over if o.startswith("probe.encoder="))
    encoder, _ = load_backbone(
        backbone, random_model=cfg.model.name, data_cfg=cfg.data, model_cfg=cfg.model,
        seed=cfg.run.seed, which=which,
    )  # fmt: skip
    spec = CORPORA[corpus]
    return position_probe(
        encoder, seed=spec["seed"], splits=spec["splits"], eval_split=split,
        frames_per_clip=cfg.data.frames_per_clip, frame_step=cfg.data.frame_step,
        tubelet=cfg.model.tubelet_size, size=cfg.data.crop_size,
    )  # fmt: skip


def surprise_check(out: Path, run_dir: Path, cfg: Config, quick: bool = False) -> dict:
    """Violation of expectation (issue 11), pretrained vs random init on the same pairs.

    Generates possible / impossible pairs on the demo's scenes (vjepa.data.surprise_pairs) and
    scores them with the encoder + predictor of ``run_dir`` and with the same architecture at
    random init (``model`` / ``mask`` / ``data`` of the pretraining config ``cfg``).
    """
    pairs = write_pairs(out / "surprise_pairs", num_pairs=4 if quick else 100, seed=0)
    scfg = load_config(
        SURPRISE_CONFIG,
        [f"run.dir={out / 'surprise'}", f"surprise.model={run_dir}", f"surprise.pairs={pairs}"],
    )
    scfg = dataclasses.replace(scfg, model=cfg.model, mask=cfg.mask, data=cfg.data)
    result = surprise_vs_random(scfg)
    return {
        "pretrained": result["pretrained"]["pairwise_accuracy"],
        "random": result["random"]["pairwise_accuracy"],
        "comparison": result["comparison"],
    }


QUICK_STEPS = ["train.max_steps=20", "train.checkpoint_every=10", "optim.warmup_steps=5"]
"""``--quick``: the pretraining (and fine-tuning) length of the smoke test."""


def pretrain_demo(
    out: Path, shards: dict[str, Path], overrides: Sequence[str], quick: bool
) -> tuple[Config, Path]:
    """Pretrain (or resume) the demo's encoder into ``out/pretrain`` on the train shards with
    configs/pretrain/demo_cpu.yaml + ``overrides``; returns its config and run folder."""
    cfg = load_config(
        PRETRAIN_CONFIG,
        [
            f"run.dir={out / 'pretrain'}",
            f"data.shards={shards['train']}",
            *(QUICK_STEPS if quick else []),
            *overrides,
        ],
    )
    return cfg, pretrain(cfg)


def run_demo(
    out: Path,
    overrides: Sequence[str] = (),
    quick: bool = False,
    corpus: str = "pan",
    eval_split: str = "val",
    kinds: Sequence[str] = ("attentive", "linear", "knn"),
) -> dict:
    """Run the demo into ``out``; returns the top-1 of every probe and encoder, and the tests.

    ``eval_split="dev"`` evaluates on the dev split instead (for choosing settings).
    """
    out = Path(out)
    shards, names = write_demo_corpus(out, corpus, quick)
    if eval_split not in shards:
        raise ValueError(f"corpus {corpus!r} has no {eval_split!r} split (it has {sorted(shards)})")
    cfg, run_dir = pretrain_demo(out, shards, overrides, quick)

    reports: dict[str, dict[str, dict]] = {"pretrained": {}, "random": {}}
    for kind in kinds:
        for name, backbone in (("pretrained", str(run_dir)), ("random", "random")):
            probe_dir = out / f"probe_{name}_{kind}"
            over = probe_overrides(cfg, probe_dir, backbone, shards, eval_split)
            if quick:
                over.append("probe.epochs=2")
            reports[name][kind] = run_probe(load_config(PROBE_CONFIGS[kind], over))
    chance = 100.0 / len(names)
    comparisons = {
        k: compare_reports(reports["pretrained"][k], reports["random"][k]) for k in kinds
    }
    num_val = reports["random"][kinds[0]]["num_val"]
    print()
    print(
        f"Probes on the {corpus} corpus ({len(names)} motion classes, chance {chance:.1f} %), "
        f"{eval_split} split ({num_val} clips), top-1 with 95 % Wilson interval:"
    )
    for kind in kinds:
        print(f"{kind}:")
        print(format_comparison(comparisons[kind], ("pretrained", "random-init")))
    position = {}
    if corpus == "objects" and not quick:
        position = {
            name: position_report(cfg, backbone, corpus, eval_split)
            for name, backbone in (("pretrained", str(run_dir)), ("random", "random"))
        }
        print(
            "object-position probe (ridge per time step, mean wrap-aware pixel error, lower is "
            f"better): pretrained {position['pretrained']['position_error']:.2f} px, "
            f"random-init {position['random']['position_error']:.2f} px, "
            f"constant guess {position['random']['position_error_const']:.2f} px"
        )
    print()
    print("Violation of expectation (pairwise accuracy: the impossible video is more surprising):")
    surprise = surprise_check(out, run_dir, cfg, quick)
    results = {
        "corpus": corpus,
        "split": eval_split,
        "num_val": num_val,
        "chance": chance,
        "pretrained": {k: reports["pretrained"][k]["top1"] for k in kinds},
        "random": {k: reports["random"][k]["top1"] for k in kinds},
        "comparison": comparisons,
        "surprise": surprise,
        "position": position,
    }
    (out / "demo_results.json").write_text(json.dumps(results, indent=2))
    return results
