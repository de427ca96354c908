"""`vjepa demo`: the whole pipeline on the embedded sample corpus, on a laptop CPU.

1. shards of data/sample: the train list (pretraining and probe training) and the val list
   (probe evaluation only: no val video is ever seen by pretraining),
2. a short pretraining of the tiny model (configs/pretrain/demo_cpu.yaml),
3. the same attentive probe on the pretrained and on a random-init encoder, side by side.

Every step is skipped when its output is already complete, so re-running resumes.
"""

from __future__ import annotations

import json
import sysconfig
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from vjepa.config import load_config

_MARKER = "configs/pretrain/demo_cpu.yaml"


def resource_root() -> Path:
    """The folder holding ``configs/`` and ``data/``: the source checkout when vjepa runs from
    one (editable install, PYTHONPATH), else the copy a wheel installs in <prefix>/share/vjepa.
    """
    checkout = Path(__file__).resolve().parents[1]
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
PROBE_CONFIG = REPO / "configs" / "probe" / "demo_attentive.yaml"


def write_demo_shards(out: Path, sample: Path = SAMPLE) -> dict[str, Path]:
    """Shards of the sample corpus: `train` (pretraining, probe training) and `val` (probe)."""
    from vjepa.data.formats import read_source
    from vjepa.data.writer import write_shards

    if not sample.is_dir():
        raise FileNotFoundError(
            f"sample corpus not found at {sample} (a source checkout has it in data/sample; "
            "an installed vjepa in <prefix>/share/vjepa/data/sample)"
        )
    sources = {
        "train": dict(src=sample / "train.txt", fmt="list", labels_from_folders=False),
        "val": dict(src=sample / "val.txt", fmt="list", labels_from_folders=False),
    }
    label_names = (sample / "labels.txt").read_text().split()
    folders = {}
    for name, spec in sources.items():
        folder = out / name
        folders[name] = folder
        if (folder / "manifest.json").is_file():
            continue  # complete: the manifest is written last
        listing = read_source(
            str(spec["src"]),
            fmt=spec["fmt"],
            split="train",
            split_id=1,
            root=None,
            labels_from_folders=spec["labels_from_folders"],
        )
        write_shards(
            listing.items,
            folder,
            prefix=name,
            max_count=64,
            label_names=listing.label_names or label_names,
            skipped=listing.skipped,
        )
    return folders


def run_demo(out: Path, overrides: Sequence[str] = (), quick: bool = False) -> dict:
    """Run the demo into ``out``; returns {"pretrained": top1, "random": top1}."""
    from vjepa.probe.run import run_probe
    from vjepa.train import pretrain

    out = Path(out)
    shards = write_demo_shards(out / "shards")
    short = ["train.max_steps=20", "train.checkpoint_every=10"] if quick else []
    cfg = load_config(
        PRETRAIN_CONFIG,
        [f"run.dir={out / 'pretrain'}", f"data.shards={shards['train']}", *short, *overrides],
    )
    run_dir = pretrain(cfg)

    results = {}
    for name, backbone in (("pretrained", str(run_dir)), ("random", "random")):
        probe_overrides = [
            f"run.dir={out / ('probe_' + name)}",
            f"probe.backbone={backbone}",
            f"probe.train_shards={shards['train']}",
            f"probe.val_shards={shards['val']}",
            f"model.name={cfg.model.name}",
            f"model.patch_size={cfg.model.patch_size}",
            f"model.pos_embed={cfg.model.pos_embed}",
            f"run.seed={cfg.run.seed}",
        ]
        if quick:
            probe_overrides.append("probe.epochs=5")
        report = run_probe(load_config(PROBE_CONFIG, probe_overrides))
        results[name] = report["top1"]

    chance = 100.0 / max(1, len((SAMPLE / "labels.txt").read_text().split()))
    print()
    print("Attentive probe on the sample corpus (motion-defined classes), val top-1:")
    print(f"  pretrained encoder ({run_dir}): {results['pretrained']:6.1f} %")
    print(f"  random-init encoder (same size):  {results['random']:6.1f} %")
    print(f"  chance:                           {chance:6.1f} %")
    (out / "demo_results.json").write_text(json.dumps(results | {"chance": chance}, indent=2))
    return results
