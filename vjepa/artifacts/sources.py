"""Classify and read every saved kind: the one place that knows what a path holds.

:func:`classify` names a path's kind: an export folder (see :mod:`vjepa.artifacts`), a
pretraining run folder or checkpoint folder of ours, an official V-JEPA / V-JEPA 2 ``.pt``
file, or a world model (``world_export``, ``world_run``, ``world_checkpoint``).
:func:`read` reads an encoder / predictor's weights, architecture and provenance without
building anything (:mod:`vjepa.artifacts.encoder` builds and loads strictly);
:func:`read_world` reads a world model's description and weights folder. Reading an export
folder or one of our checkpoints needs only safetensors and never unpickles anything.

Which encoder of a run: the one that trained. With a frozen teacher (``optim.ema: [1, 1]``
and ``train.target: ema``) the target encoder never moves from the random init, so the
default is then the context encoder (:func:`trained_encoder`).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from safetensors.torch import load_file

from vjepa.artifacts.arch import (
    arch_from_config,
    arch_of,
    predictor_arch_from_state,
)
from vjepa.artifacts.official import build_from_official, read_official
from vjepa.config import Config, from_dict
from vjepa.data.augment import imagenet_normalization
from vjepa.errors import UsageError
from vjepa.train.checkpoint import BEST_DIR, is_complete, latest_checkpoint

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
PREDICTOR_FILE = "predictor.safetensors"
CONTEXT_FILE = "context_encoder.safetensors"
FORMATS_FILE = "formats.json"
TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
HF_DIR = "hf"
WORLD_FILE = "world.json"  # in a `vjepa world train` run folder
CLASSIFIER_FILE = "classifier.json"  # in a `vjepa finetune` run folder (and its best/)
HEAD_FILE = "head.safetensors"  # a fine-tuned classifier's head: checkpoint and export
WORLD_ENCODER = "encoder.safetensors"  # world export / checkpoint weights
WORLD_PREDICTOR = "predictor.safetensors"
WORLD_PROJECTOR = "projector.safetensors"  # only with spec.latent_dim > 0

Which = Literal["target", "context", "predictor"]
Kind = Literal[
    "export", "checkpoint", "run", "official", "world_export", "world_run", "world_checkpoint"
]
_CKPT_FILES = {"target": "target_encoder", "context": "encoder", "predictor": "predictor"}
_STEP_DIR = re.compile(r"^step-(\d+)$")


class ExportSourceError(FileNotFoundError):
    """A path that is none of: export folder, run folder, checkpoint folder, official file."""


class WorldModelSourceError(ExportSourceError):
    """A path that is none of: world export folder, world train run folder, its checkpoint."""


# ----------------------------------------------------------------------------------------
# Reading a source
# ----------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """One module's weights and everything needed to rebuild and describe it."""

    which: Which
    arch: dict[str, Any]
    """Encoder: ARCH_KEYS. Predictor: see :func:`predictor_arch_from_state`."""
    state: dict[str, torch.Tensor]
    weights_file: Path
    """The file the weights came from (hashed for probe reports)."""
    provenance: dict[str, Any]
    """Where the weights came from: kind, path, step, training data (carried through re-exports)."""
    normalization: dict[str, list[float]] = field(default_factory=imagenet_normalization)
    extras: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Companion state dicts copied alongside (``predictor``, ``context``, a classifier's
    ``head``)."""
    predictor_arch: dict[str, Any] | None = None
    classifier: dict[str, Any] | None = None
    """A fine-tuned classifier's head and labels (``head``, ``label_names``, ...: the
    ``classifier.json`` of its run, less the encoder's architecture); None for an encoder."""


def classify(path: str | Path) -> Kind:
    """The kind of saved thing at ``path`` (see :data:`Kind`); else :class:`ExportSourceError`."""
    path = Path(path)
    if not path.exists():
        raise ExportSourceError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name == WEIGHTS_FILE and (path.parent / CONFIG_FILE).is_file():
            return "export"
        return "official"
    if _is_world_export(path):
        return "world_export"
    if (path / WORLD_FILE).is_file():
        return "world_run"
    if is_complete(path) and (path.parent.parent / WORLD_FILE).is_file():
        return "world_checkpoint"
    if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        return "export"
    if (path / "COMPLETE").is_file() and _STEP_DIR.match(path.name):
        return "checkpoint"
    if (path / "checkpoints").is_dir():
        return "run"
    raise ExportSourceError(
        f"{path}: not an export folder ({WEIGHTS_FILE} + {CONFIG_FILE}), a run folder "
        "(checkpoints/), a complete checkpoint folder (step-XXXXXXXX/ with COMPLETE), a world "
        "model or a file"
    )


def _is_world_export(path: Path) -> bool:
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file() or (path / WEIGHTS_FILE).is_file():
        return False
    try:
        return json.loads(cfg_file.read_text()).get("kind") == "world_model"
    except json.JSONDecodeError:
        return False


def trained_encoder(cfg: Config) -> Literal["target", "context"]:
    """The encoder of a pretraining run that learned: the target, unless it never moved.

    A frozen teacher (``optim.ema`` [1, 1] with ``objective.target: ema``) keeps the target
    encoder at its random init; the context encoder is then the trained one. So it is with a
    pretrained teacher (``objective.teacher``: never updated) and with pixel targets
    (``objective.target_features`` pixels / diff_pixels: no teacher is used at all).
    """
    o = cfg.objective
    frozen = o.target == "ema" and tuple(cfg.optim.ema) == (1.0, 1.0)
    unused = bool(o.teacher) or o.target_features in ("pixels", "diff_pixels")
    return "context" if frozen or (o.target == "ema" and unused) else "target"


def read_world(path: str | Path) -> tuple[dict[str, Any], Path]:
    """(description, folder holding the weights) of a world model: a world export folder, a
    world train run folder (its latest checkpoint) or one of its checkpoints."""
    path = Path(path)
    try:
        kind = classify(path)
    except ExportSourceError:
        kind = None
    if kind == "world_export":
        return json.loads((path / CONFIG_FILE).read_text()), path
    if kind == "world_run":
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise WorldModelSourceError(f"{path}: a world train run folder without a checkpoint")
        return json.loads((path / WORLD_FILE).read_text()), ckpt
    if kind == "world_checkpoint":
        return json.loads((path.parent.parent / WORLD_FILE).read_text()), path
    raise WorldModelSourceError(
        f"{path}: not a world model (expected an export folder with {CONFIG_FILE} of kind "
        f"world_model, a `vjepa world train` run folder with {WORLD_FILE}, or one of its "
        "checkpoints)"
    )


def read(
    path: str | Path,
    *,
    which: Which | None = None,
    num_heads: int | None = None,
    pred_num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
    with_extras: bool = False,
) -> Loaded:
    """Read the ``which`` module of any supported source (no module is built here).

    ``which=None``: the module an export folder holds, the trained encoder of a run
    (:func:`trained_encoder`; asking for the untrained one warns), else the target encoder.
    ``num_heads`` / ``pred_num_heads``: attention heads of the encoders / the predictor. Needed
    only for official files of a non-official width; when not given, the official count, else
    a head-dim-64 guess said in one line (:func:`vjepa.artifacts.official.resolve_heads`). For our own
    runs and exports they override the stored counts.
    ``num_frames`` / ``img_size`` set the clip geometry recorded for a RoPE model (sin-cos
    models keep their stored table's; both accept other clip sizes at run time).
    ``with_extras`` also reads the companion predictor (and, for official files, context encoder).
    """
    path = Path(path)
    kind = classify(path)
    if kind.startswith("world_"):
        raise ExportSourceError(f"{path}: a world model; read it with vjepa.load_world_model")
    if kind == "export":
        loaded = _read_export(path if path.is_dir() else path.parent, which, with_extras)
    elif kind == "official":
        heads = (num_heads, pred_num_heads)
        loaded = _read_official(path, which or "target", heads, num_frames, img_size, with_extras)
    else:
        folder = path if kind == "checkpoint" else _latest(path)
        loaded = _read_checkpoint(folder, which, with_extras)
    geometry = _geometry(num_frames, img_size)
    if geometry and kind != "official":
        _set_geometry(loaded, geometry, str(path))
    if num_heads is not None and loaded.which != "predictor":
        loaded.arch["heads"] = num_heads
    if pred_num_heads is not None:
        if loaded.which == "predictor":
            loaded.arch["heads"] = pred_num_heads
        if loaded.predictor_arch is not None:
            loaded.predictor_arch["heads"] = pred_num_heads
    return loaded


def _set_geometry(loaded: Loaded, geometry: dict[str, int], source: str) -> None:
    """Record another input geometry (RoPE only: a sin-cos table is stored at its own size)."""
    if loaded.arch["pos_embed"] != "rope":
        raise UsageError(
            f"{source}: num_frames / img_size can only be changed for RoPE encoders; this one "
            "has a stored sin-cos table (it still accepts other clip sizes by resampling it)"
        )
    loaded.arch.update(geometry)
    if loaded.predictor_arch is not None:
        loaded.predictor_arch.update(geometry)


def _geometry(num_frames: int | None, img_size: int | None) -> dict[str, int]:
    out = {}
    if num_frames is not None:
        out["num_frames"] = num_frames
    if img_size is not None:
        out["img_size"] = img_size
    return out


def _latest(run_dir: Path) -> Path:
    """A run's checkpoint to read: its latest; for a fine-tuning run the kept best one (the
    one its report.json scored), when it kept one."""
    best = latest_checkpoint(run_dir / BEST_DIR) if (run_dir / CLASSIFIER_FILE).is_file() else None
    found = best or latest_checkpoint(run_dir)
    if found is None:
        raise ExportSourceError(f"{run_dir}: run folder without a complete checkpoint")
    return found


def _read_export(folder: Path, which: Which | None, with_extras: bool) -> Loaded:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ExportSourceError(f"{folder / CONFIG_FILE}: not valid JSON ({err})") from None
    if config.get("format_version") != FORMAT_VERSION:
        raise ExportSourceError(
            f"{folder / CONFIG_FILE}: format_version {config.get('format_version')!r} "
            f"is not {FORMAT_VERSION}"
        )
    stored = config["which"]
    which = which or stored
    files = {"predictor": PREDICTOR_FILE, "context": CONTEXT_FILE, stored: WEIGHTS_FILE}
    file = folder / files.get(which, "")
    if which not in files or not file.is_file():
        raise ExportSourceError(
            f"{folder}: this export holds no {which} module (it holds {stored})"
        )
    arch = config["predictor"] if which == "predictor" and stored != "predictor" else None
    loaded = Loaded(
        which=which,
        arch=dict(arch if arch is not None else config["architecture"]),
        state=load_file(str(file)),
        weights_file=file,
        provenance=dict(config["source"]),
        normalization=dict(config["normalization"]),
        predictor_arch=config.get("predictor"),
    )
    if with_extras and which != "predictor" and (folder / PREDICTOR_FILE).is_file():
        loaded.extras["predictor"] = load_file(str(folder / PREDICTOR_FILE))
    if "classifier" in config and which == stored:
        loaded.classifier = dict(config["classifier"])
        if with_extras:
            loaded.extras["head"] = _load_weights(folder / HEAD_FILE)
    return loaded


def _read_classifier(folder: Path, which: Which | None, with_extras: bool) -> Loaded:
    """A `vjepa finetune` checkpoint: its one (fine-tuned) encoder, and its head as an extra."""
    if which == "predictor":
        raise ExportSourceError(f"{folder}: a fine-tuned classifier holds no predictor")
    desc = json.loads((folder.parent.parent / CLASSIFIER_FILE).read_text())
    step = int(_STEP_DIR.match(folder.name).group(1))
    loaded = Loaded(
        which="target",  # its only encoder
        arch=dict(desc["architecture"]),
        state=_load_weights(folder / "encoder.safetensors"),
        weights_file=folder / "encoder.safetensors",
        provenance={
            "kind": "vjepa-finetune",
            "path": str(folder.resolve()),
            "step": step,
            "encoder": "fine-tuned",
            "backbone": desc.get("backbone"),
        },
        normalization=dict(desc["normalization"]),
        classifier={k: v for k, v in desc.items() if k not in ("architecture", "normalization")},
    )
    if with_extras:
        loaded.extras["head"] = _load_weights(folder / HEAD_FILE)
    return loaded


def _read_checkpoint(folder: Path, which: Which | None, with_extras: bool) -> Loaded:
    if not (folder / "config.yaml").is_file():
        raise ExportSourceError(f"{folder}: checkpoint without config.yaml")
    if (folder.parent.parent / CLASSIFIER_FILE).is_file():
        return _read_classifier(folder, which, with_extras)
    cfg = from_dict(yaml.safe_load((folder / "config.yaml").read_text()))
    trained = trained_encoder(cfg)
    if which is None:
        which = trained
    elif which == "target" and trained == "context":  # the context encoder always trains
        warnings.warn(
            f"{folder}: the target encoder never trained (a frozen teacher: optim.ema "
            f"{list(cfg.optim.ema)}, objective.teacher {cfg.objective.teacher!r}, "
            f"target_features {cfg.objective.target_features}), it is the random init or the "
            "given teacher; the trained one is the context encoder (the default)",
            stacklevel=4,
        )
    arch = arch_from_config(cfg, which)
    state = _load_weights(folder / f"{_CKPT_FILES[which]}.safetensors")
    pred_file = folder / "predictor.safetensors"
    pred_state = state if which == "predictor" else None
    if with_extras and which != "predictor" and pred_file.is_file():
        pred_state = _load_weights(pred_file)
    pred_arch = None
    if pred_state is not None:
        pred_arch = predictor_arch_from_state(pred_state, heads=cfg.model.pred_heads, encoder=arch)
    step = int(_STEP_DIR.match(folder.name).group(1))
    loaded = Loaded(
        which=which,
        arch=pred_arch if which == "predictor" else arch,
        state=state,
        weights_file=folder / f"{_CKPT_FILES[which]}.safetensors",
        provenance=_checkpoint_provenance(folder, cfg, step) | {"encoder": which},
        predictor_arch=pred_arch,
    )
    if which != "predictor" and pred_state is not None:
        loaded.extras["predictor"] = pred_state
    return loaded


def _load_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise ExportSourceError(f"{file.parent}: no {file.name}")
    return load_file(str(file))


def _checkpoint_provenance(folder: Path, cfg: Any, step: int) -> dict[str, Any]:
    """What the model card says about training: data, steps, samples seen, config summary."""
    # mmap: the optimizer state in there may be large; only two small entries are read.
    state = torch.load(folder / "train_state.pt", map_location="cpu", weights_only=True, mmap=True)
    samples = _samples_seen(state, cfg.data.batch_size)  # videos; each gave num_clips clips
    return {
        "kind": "vjepa-run",
        "path": str(folder.resolve()),
        "step": step,
        "samples_seen": samples,
        "clips_seen": samples * cfg.data.num_clips if samples is not None else None,
        "data": {"shards": cfg.data.shards, "num_samples": _shard_samples(cfg.data.shards)},
        "config": {
            "model": cfg.model.name,
            "frames_per_clip": cfg.data.frames_per_clip,
            "frame_step": cfg.data.frame_step,
            "crop_size": cfg.data.crop_size,
            "batch_size": cfg.data.batch_size,
            "num_clips": cfg.data.num_clips,
            "grad_accum": cfg.train.grad_accum,
            "max_steps": cfg.train.max_steps,
            "lr": cfg.optim.lr,
            "mask": cfg.mask.kind,
            "seed": cfg.run.seed,
            "target_mode": cfg.objective.target_mode,
            "rollout": cfg.objective.rollout,
        },
    }


def _samples_seen(state: Any, batch_size: int) -> int | None:
    """Videos the run trained on: micro-batches per rank x batch size x ranks (train.py's state).

    Each video gives ``data.num_clips`` clips (batch rows): clips seen = this x num_clips.
    """
    if not isinstance(state, dict):
        return None
    counters, world = state.get("counters"), state.get("world_size")
    if isinstance(counters, dict) and isinstance(world, int) and "batches" in counters:
        return int(counters["batches"]) * batch_size * world
    return None


def _shard_samples(shards: str) -> int | None:
    """Sample count from the shard folder's manifest.json, when it has one."""
    manifest = Path(shards) / "manifest.json"
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    count = data.get("count")  # written by vjepa.data.writer
    return count if isinstance(count, int) else None


def _read_official(
    path: Path,
    which: Which,
    heads: tuple[int | None, int | None],
    num_frames: int | None,
    img_size: int | None,
    with_extras: bool,
) -> Loaded:
    """An official V-JEPA / V-JEPA 2 file: weights, inferred architecture, validated strictly.

    ``heads``: (encoder, predictor) head counts or None (see :func:`read`).
    """
    ckpt = read_official(path)
    if not with_extras and which != "predictor":
        ckpt = replace(ckpt, predictor=None)  # not built: no head-count guess to report
    # Built on the meta device: no random init. build_from_official still checks every key
    # and shape strictly; its (then no-op) copy into meta tensors only warns, and
    # load_strict assigns the real tensors later.
    with torch.device("meta"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*meta parameter.*")
        encoder, predictor = build_from_official(
            ckpt,
            num_heads=heads[0],
            pred_num_heads=heads[1],
            num_frames=num_frames,
            img_size=img_size,
        )
    arch = arch_of(encoder)
    pred_arch = None
    if predictor is not None:
        pred_arch = predictor_arch_from_state(
            ckpt.predictor, heads=predictor.num_heads, encoder=arch
        )
    states = {
        "target": ckpt.target_encoder,
        "context": ckpt.encoder,
        "predictor": ckpt.predictor,
    }
    if states[which] is None:
        raise ExportSourceError(f"{path}: the official file holds no {which} module")
    loaded = Loaded(
        which=which,
        arch=pred_arch if which == "predictor" else arch,
        state=dict(states[which]),
        weights_file=path,
        provenance={
            "kind": f"official-{ckpt.flavour}",
            "path": str(path.resolve()),
            "step": None,
            "target_encoder_entry": ckpt.source_key,
        },
        predictor_arch=pred_arch,
    )
    if with_extras:
        for name in ("predictor", "context"):
            if name != which and states[name] is not None:
                loaded.extras[name] = dict(states[name])
    return loaded


def config_json(loaded: Loaded) -> dict[str, Any]:
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "which": loaded.which,
        "architecture": {k: loaded.arch[k] for k in sorted(loaded.arch)},
        "normalization": loaded.normalization,
        "input": "float [B, 3, T, H, W], RGB in [0, 1] normalised by mean/std",
        "output": "tokens [B, N, D], N = (T/tubelet_size) * (H/patch_size) * (W/patch_size)",
        "source": loaded.provenance,
    }
    if loaded.predictor_arch is not None and loaded.which != "predictor":
        config["predictor"] = loaded.predictor_arch
    if loaded.classifier is not None:
        config["classifier"] = loaded.classifier  # + head.safetensors: vjepa.load_classifier
    return config
