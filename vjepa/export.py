"""Export a frozen encoder, import official checkpoints, and load either back.

An *export folder* is the one portable format of this project::

    <out>/
        model.safetensors            the exported module's state dict (official bare key names)
        config.json                  architecture, normalisation, provenance (format_version 1)
        README.md                    model card
        predictor.safetensors        the predictor, when the source had one (import, HF export)
        context_encoder.safetensors  the context encoder (``vjepa import`` only)
        formats.json                 extra formats written and their measured max |diff|
        model.torchscript.pt / model.onnx / hf/   optional extra formats

:func:`load_encoder` reads an export folder, a run folder or checkpoint folder of ours, or an
official V-JEPA / V-JEPA 2 ``.pt`` file, loads strictly (a missing, unexpected or mis-shaped key
is a :class:`WeightsMismatchError` naming it) and returns a :class:`FrozenEncoder`. Reading an
export folder or one of our checkpoints needs only safetensors and never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vjepa.data.augment import IMAGENET_MEAN, IMAGENET_STD
from vjepa.official import WeightsMismatchError, load_state_strict

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
EXTRA_FORMATS = ("torchscript", "onnx", "hf")
ARCH_KEYS = (
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "patch_size",
    "tubelet_size",
    "num_frames",
    "img_size",
    "pos_embed",
)
"""The keys of config.json ``architecture``: exactly the VisionTransformer constructor arguments."""

Which = Literal["target", "context", "predictor"]
_CKPT_FILES = {"target": "target_encoder", "context": "encoder", "predictor": "predictor"}
_STEP_DIR = re.compile(r"^step-(\d+)$")


class ExportSourceError(FileNotFoundError):
    """A path that is none of: export folder, run folder, checkpoint folder, official file."""


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
    normalization: dict[str, list[float]] = field(
        default_factory=lambda: {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    )
    extras: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Companion state dicts copied alongside (``predictor``, ``context``)."""
    predictor_arch: dict[str, Any] | None = None


def source_kind(path: str | Path) -> str:
    """Classify ``path``: ``export``, ``checkpoint``, ``run`` or ``official``; else raise."""
    path = Path(path)
    if not path.exists():
        raise ExportSourceError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name == WEIGHTS_FILE and (path.parent / CONFIG_FILE).is_file():
            return "export"
        return "official"
    if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        return "export"
    if (path / "COMPLETE").is_file() and _STEP_DIR.match(path.name):
        return "checkpoint"
    if (path / "checkpoints").is_dir():
        return "run"
    raise ExportSourceError(
        f"{path}: not an export folder ({WEIGHTS_FILE} + {CONFIG_FILE}), a run folder "
        "(checkpoints/), a complete checkpoint folder (step-XXXXXXXX/ with COMPLETE) or a file"
    )


def read_source(
    path: str | Path,
    *,
    which: Which | None = None,
    num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
    with_extras: bool = False,
) -> Loaded:
    """Read the ``which`` module of any supported source (no module is built here).

    ``which=None``: the module an export folder holds, else the target encoder.
    ``num_frames`` / ``img_size`` set the clip geometry recorded for a RoPE model (sin-cos
    models keep their stored table's; both accept other clip sizes at run time).
    ``with_extras`` also reads the companion predictor (and, for official files, context encoder).
    """
    path = Path(path)
    kind = source_kind(path)
    if kind == "export":
        loaded = _read_export(path if path.is_dir() else path.parent, which, with_extras)
    elif kind == "official":
        loaded = _read_official(
            path, which or "target", num_heads, num_frames, img_size, with_extras
        )
    else:
        folder = path if kind == "checkpoint" else _latest(path)
        loaded = _read_checkpoint(folder, which or "target", with_extras)
    geometry = _geometry(num_frames, img_size)
    if geometry and kind != "official":
        _set_geometry(loaded, geometry, str(path))
    if num_heads is not None and loaded.which != "predictor":
        loaded.arch["heads"] = num_heads
    return loaded


def _set_geometry(loaded: Loaded, geometry: dict[str, int], source: str) -> None:
    """Record another input geometry (RoPE only: a sin-cos table is stored at its own size)."""
    if loaded.arch["pos_embed"] != "rope":
        raise ValueError(
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
    from vjepa.checkpoint import latest_checkpoint

    found = latest_checkpoint(run_dir)
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
    return loaded


def _read_checkpoint(folder: Path, which: Which, with_extras: bool) -> Loaded:
    import yaml

    from vjepa.config import from_dict

    if not (folder / "config.yaml").is_file():
        raise ExportSourceError(f"{folder}: checkpoint without config.yaml")
    cfg = from_dict(yaml.safe_load((folder / "config.yaml").read_text()))
    arch = _arch_from_config(cfg)
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
        provenance=_checkpoint_provenance(folder, cfg, step),
        predictor_arch=pred_arch,
    )
    if which != "predictor" and pred_state is not None:
        loaded.extras["predictor"] = pred_state
    return loaded


def _load_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise ExportSourceError(f"{file.parent}: no {file.name}")
    return load_file(str(file))


def _arch_from_config(cfg: Any) -> dict[str, Any]:
    """Encoder architecture of one of our runs (model size row + geometry of the clips)."""
    from vjepa.models.encoder import SIZES

    size = SIZES[cfg.model.name]
    return {
        "width": size.width,
        "depth": size.depth,
        "heads": size.heads,
        "mlp_ratio": float(size.mlp_ratio),
        "patch_size": cfg.model.patch_size,
        "tubelet_size": cfg.model.tubelet_size,
        "num_frames": cfg.data.frames_per_clip,
        "img_size": cfg.data.crop_size,
        "pos_embed": cfg.model.pos_embed,
    }


def predictor_arch_from_state(
    state: dict[str, torch.Tensor], *, heads: int, encoder: dict[str, Any]
) -> dict[str, Any]:
    """Predictor architecture: sizes read off the weights, heads and geometry given."""
    width, embed_dim = state["predictor_embed.weight"].shape  # [Dp, D]
    depth = len({k.split(".")[1] for k in state if k.startswith("predictor_blocks.")})
    hidden = state["predictor_blocks.0.mlp.fc1.weight"].shape[0]  # [Dp * mlp_ratio, Dp]
    return {
        "embed_dim": int(embed_dim),
        "width": int(width),
        "depth": depth,
        "heads": heads,
        "mlp_ratio": hidden / width,
        "num_mask_tokens": sum(k.startswith("mask_tokens.") for k in state),
        **{k: encoder[k] for k in ("patch_size", "tubelet_size", "num_frames", "img_size")},
        "pos_embed": encoder["pos_embed"],
    }


def _checkpoint_provenance(folder: Path, cfg: Any, step: int) -> dict[str, Any]:
    """What the model card says about training: data, steps, samples seen, config summary."""
    # mmap: the optimizer state in there may be large; only two small entries are read.
    state = torch.load(folder / "train_state.pt", map_location="cpu", weights_only=True, mmap=True)
    samples = _samples_seen(state, cfg.data.batch_size)
    return {
        "kind": "vjepa-run",
        "path": str(folder.resolve()),
        "step": step,
        "samples_seen": samples,
        "data": {"shards": cfg.data.shards, "num_samples": _shard_samples(cfg.data.shards)},
        "config": {
            "model": cfg.model.name,
            "frames_per_clip": cfg.data.frames_per_clip,
            "frame_step": cfg.data.frame_step,
            "crop_size": cfg.data.crop_size,
            "batch_size": cfg.data.batch_size,
            "grad_accum": cfg.train.grad_accum,
            "max_steps": cfg.train.max_steps,
            "lr": cfg.optim.lr,
            "mask": cfg.mask.kind,
            "seed": cfg.run.seed,
        },
    }


def _samples_seen(state: Any, batch_size: int) -> int | None:
    """Clips the run trained on: micro-batches per rank x batch size x ranks (train.py's state)."""
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
    num_heads: int | None,
    num_frames: int | None,
    img_size: int | None,
    with_extras: bool,
) -> Loaded:
    """An official V-JEPA / V-JEPA 2 file: weights, inferred architecture, validated strictly."""
    from vjepa.official import build_from_official, read_official

    ckpt = read_official(path)
    # Built on the meta device: no random init. build_from_official still checks every key
    # and shape strictly; its (then no-op) copy into meta tensors only warns, and
    # load_strict assigns the real tensors later.
    with torch.device("meta"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*meta parameter.*")
        encoder, predictor = build_from_official(
            ckpt, num_heads=num_heads, num_frames=num_frames, img_size=img_size
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


# ----------------------------------------------------------------------------------------
# Building modules strictly
# ----------------------------------------------------------------------------------------


def arch_of(encoder: nn.Module) -> dict[str, Any]:
    """The ARCH_KEYS of a built VisionTransformer."""
    return {
        "width": encoder.embed_dim,
        "depth": len(encoder.blocks),
        "heads": encoder.num_heads,
        "mlp_ratio": float(encoder.mlp_ratio),
        "patch_size": encoder.patch_size,
        "tubelet_size": encoder.tubelet_size,
        "num_frames": encoder.num_frames,
        "img_size": encoder.img_size,
        "pos_embed": encoder.pos_embed_mode,
    }


def build_encoder_from_arch(arch: dict[str, Any]) -> nn.Module:
    """A VisionTransformer with the architecture of config.json, on the meta device.

    Meta: no memory and no random init (9 s for a ViT-L on 2 cores); :func:`load_strict`
    then assigns the loaded tensors.
    """
    from vjepa.models.encoder import VisionTransformer

    missing = [k for k in ARCH_KEYS if k not in arch]
    if missing:
        raise WeightsMismatchError(f"architecture lacks {', '.join(missing)}")
    with torch.device("meta"):
        return VisionTransformer(
            img_size=arch["img_size"],
            num_frames=arch["num_frames"],
            patch_size=arch["patch_size"],
            tubelet_size=arch["tubelet_size"],
            width=arch["width"],
            depth=arch["depth"],
            heads=arch["heads"],
            mlp_ratio=arch["mlp_ratio"],
            pos_embed=arch["pos_embed"],
        )


# ----------------------------------------------------------------------------------------
# The frozen encoder
# ----------------------------------------------------------------------------------------


class FrozenEncoder(nn.Module):
    """An encoder in eval mode with no trainable parameters, plus its input contract.

    ``forward(x [B,3,T,H,W] float, ImageNet-normalised) -> [B,N,D]`` token features.
    ``preprocess`` turns uint8 frames into that input; ``pool`` averages the tokens.
    """

    def __init__(
        self, encoder: nn.Module, config: dict[str, Any], *, source: str, weights_file: Path
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config
        arch = config["architecture"]
        self.embed_dim: int = arch["width"]
        self.num_frames: int = arch["num_frames"]
        self.img_size: int = arch["img_size"]
        self.patch_size: int = arch["patch_size"]
        self.tubelet_size: int = arch["tubelet_size"]
        self.source = source
        self.weights_file = weights_file
        self._sha256: str | None = None
        # On the 0..255 scale; non-persistent, so the state dict stays the encoder's keys.
        mean = torch.tensor(config["normalization"]["mean"]).view(1, 3, 1, 1, 1) * 255.0
        std = torch.tensor(config["normalization"]["std"]).view(1, 3, 1, 1, 1) * 255.0
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("inv_std", 1.0 / std, persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenEncoder:
        # Frozen means frozen: a probe calling .train() on its wrapper must not switch this
        # backbone's layers (dropout / drop-path) into training behaviour.
        return super().train(False)

    @property
    def sha256(self) -> str:
        """SHA-256 of the weights file (computed once, on first use)."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.weights_file)
        return self._sha256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # [B, N, D]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of forward (timm naming)."""
        return self.forward(x)

    @staticmethod
    def pool(tokens: torch.Tensor) -> torch.Tensor:
        """Mean over tokens: [B, N, D] -> [B, D]."""
        return tokens.mean(dim=1)

    @torch.no_grad()
    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames [T,H,W,3] or [B,T,H,W,3] -> [B,3,T,S,S] normalised float on this device.

        Exactly the evaluation transform of the data pipeline (short side to ``img_size``,
        antialiased bilinear on uint8, centre crop), so features match ``vjepa probe``'s.
        The frame count is kept as given (pass ``num_frames`` frames for the trained geometry).
        """
        from vjepa.data.augment import eval_transform

        video = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if video.dtype != np.uint8 or video.ndim not in (4, 5) or video.shape[-1] != 3:
            raise ValueError(
                f"preprocess expects uint8 frames [T,H,W,3] or [B,T,H,W,3], "
                f"got {video.dtype} {tuple(video.shape)}"
            )
        clips = video[None] if video.ndim == 4 else video
        x = torch.cat([eval_transform(c, crop_size=self.img_size, normalize=False) for c in clips])
        x = x.to(self.mean.device)  # [B, 3, T, S, S] uint8: 4x less to copy than float
        return (x.float() - self.mean) * self.inv_std  # same arithmetic as augment.normalize


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _config_json(loaded: Loaded) -> dict[str, Any]:
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
    return config


def load_encoder(
    path: str | Path,
    *,
    num_heads: int | None = None,
    device: str | torch.device = "cpu",
    which: Literal["target", "context"] | None = None,
) -> FrozenEncoder:
    """Load a frozen encoder from an export folder, run / checkpoint folder or official file.

    Strict: a missing, unexpected or mis-shaped key raises :class:`WeightsMismatchError`
    naming it. ``num_heads`` is needed only for official files whose width does not
    determine the head count. ``which``: ``context`` for the online encoder of a run or
    official file (default: the target encoder, or whatever encoder an export folder holds).
    Returns a module in eval mode with ``requires_grad`` False.
    """
    loaded = read_source(path, which=which, num_heads=num_heads)
    return _frozen(loaded, str(path)).to(device)


def _frozen(loaded: Loaded, source: str) -> FrozenEncoder:
    if loaded.which == "predictor":
        raise ExportSourceError(f"{source}: holds a predictor, not an encoder")
    encoder = build_encoder_from_arch(loaded.arch)
    load_state_strict(encoder, loaded.state, f"{source} ({loaded.which} encoder)")
    return FrozenEncoder(
        encoder, _config_json(loaded), source=source, weights_file=loaded.weights_file
    )


# ----------------------------------------------------------------------------------------
# Writing an export folder
# ----------------------------------------------------------------------------------------


def export(
    src: str | Path,
    out_dir: str | Path,
    *,
    which: Which = "target",
    formats: Sequence[str] = (),
    probe_report: Path | None = None,
    num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> Path:
    """Export one module of ``src`` as ``out_dir/model.safetensors`` + config.json + README.md.

    ``src``: a run folder (its latest complete checkpoint), a checkpoint folder, an export
    folder or an official V-JEPA / V-JEPA 2 file. ``formats`` adds any of ``torchscript``,
    ``onnx`` (checked with onnxruntime when installed) and ``hf`` (a transformers VJEPA2Model
    folder); each one's measured max |difference| to our module goes into formats.json.
    """
    unknown = [f for f in formats if f not in EXTRA_FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {list(EXTRA_FORMATS)}")
    if which == "predictor" and formats:
        raise ValueError("extra formats are for encoders; export the predictor without --format")
    loaded = read_source(
        src,
        which=which,
        num_heads=num_heads,
        num_frames=num_frames,
        img_size=img_size,
        with_extras=True,
    )
    module = _build_checked(loaded, str(src))
    out = _prepare_out(Path(src), Path(out_dir))
    config = _write_weights(loaded, out)
    done = _write_formats(module, loaded, config, out, formats) if formats else {}
    report = json.loads(Path(probe_report).read_text()) if probe_report is not None else None
    (out / CARD_FILE).write_text(model_card(config, formats=done, probe=report))
    return out


def import_official(
    path: str | Path,
    out_dir: str | Path,
    *,
    num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> Path:
    """Convert an official V-JEPA / V-JEPA 2 file into an export folder of ours.

    The target encoder becomes model.safetensors; the context encoder and the predictor are
    kept as context_encoder.safetensors and predictor.safetensors, all checked strictly.
    ``num_frames`` / ``img_size`` record the clip geometry of a RoPE model (V-JEPA 2 files do
    not store it; the default is its 16 x 256 pretraining clip).
    """
    path = Path(path)
    if source_kind(path) != "official":
        raise ExportSourceError(f"{path}: vjepa import takes an official checkpoint file")
    loaded = read_source(
        path,
        which="target",
        num_heads=num_heads,
        num_frames=num_frames,
        img_size=img_size,
        with_extras=True,
    )
    _build_checked(loaded, str(path))
    if "context" in loaded.extras:
        context = build_encoder_from_arch(loaded.arch)
        load_state_strict(context, loaded.extras["context"], f"{path} (context encoder)")
    out = _prepare_out(path, Path(out_dir))
    config = _write_weights(loaded, out, with_context=True)
    (out / CARD_FILE).write_text(model_card(config, formats={}, probe=None))
    return out


def _build_checked(loaded: Loaded, source: str) -> nn.Module:
    """Build the module the weights describe and load them strictly (the export's validation)."""
    if loaded.which == "predictor":
        predictor = build_predictor_from_arch(loaded.arch)
        load_state_strict(predictor, loaded.state, f"{source} (predictor)")
        return predictor
    frozen = _frozen(loaded, source)
    if "predictor" in loaded.extras and loaded.predictor_arch is not None:
        predictor = build_predictor_from_arch(loaded.predictor_arch)
        load_state_strict(predictor, loaded.extras["predictor"], f"{source} (predictor)")
    return frozen


def build_predictor_from_arch(arch: dict[str, Any]) -> nn.Module:
    """A Predictor with the architecture of a config.json ``predictor`` section (meta device)."""
    from vjepa.models.predictor import Predictor

    with torch.device("meta"):
        return Predictor(
            embed_dim=arch["embed_dim"],
            width=arch["width"],
            depth=arch["depth"],
            heads=arch["heads"],
            mlp_ratio=arch["mlp_ratio"],
            num_mask_tokens=arch["num_mask_tokens"],
            img_size=arch["img_size"],
            num_frames=arch["num_frames"],
            patch_size=arch["patch_size"],
            tubelet_size=arch["tubelet_size"],
            pos_embed=arch["pos_embed"],
        )


def _prepare_out(src: Path, out: Path) -> Path:
    src_dir = src if src.is_dir() else src.parent
    if out.resolve() == src_dir.resolve():
        raise ValueError(f"{out}: the export folder must differ from the source folder")
    out.mkdir(parents=True, exist_ok=True)
    for stale in (TORCHSCRIPT_FILE, ONNX_FILE, ONNX_FILE + ".data", FORMATS_FILE, CONTEXT_FILE):
        (out / stale).unlink(missing_ok=True)  # never leave files of an older export behind
    shutil.rmtree(out / HF_DIR, ignore_errors=True)
    return out


def _save(state: dict[str, torch.Tensor], path: Path, which: str) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"format": "pt", "vjepa_format_version": str(FORMAT_VERSION), "which": which}
    save_file(tensors, str(path), metadata=meta)


def _write_weights(loaded: Loaded, out: Path, *, with_context: bool = False) -> dict[str, Any]:
    _save(loaded.state, out / WEIGHTS_FILE, loaded.which)
    predictor = loaded.extras.get("predictor") if loaded.which != "predictor" else None
    if predictor is not None:
        _save(predictor, out / PREDICTOR_FILE, "predictor")
    else:
        (out / PREDICTOR_FILE).unlink(missing_ok=True)
        loaded.predictor_arch = None
    if with_context and "context" in loaded.extras:
        _save(loaded.extras["context"], out / CONTEXT_FILE, "context")
    config = _config_json(loaded)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


# ----------------------------------------------------------------------------------------
# Extra formats
# ----------------------------------------------------------------------------------------


def example_input(arch: dict[str, Any], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded normal clip of the exported geometry: [batch, 3, T, S, S]."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, 3, arch["num_frames"], arch["img_size"], arch["img_size"])
    return torch.randn(shape, generator=gen)


def _write_formats(
    frozen: FrozenEncoder,
    loaded: Loaded,
    config: dict[str, Any],
    out: Path,
    formats: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Write each extra format, check it against ``frozen`` and record the result."""
    example = example_input(loaded.arch, batch=1, seed=0)
    check = example_input(loaded.arch, batch=2, seed=1)  # a different input and batch size
    with torch.no_grad():
        expected = frozen(check)  # [2, N, D]
    done: dict[str, dict[str, Any]] = {}
    if "torchscript" in formats:
        done["torchscript"] = write_torchscript(frozen, out / TORCHSCRIPT_FILE, example)
        with warnings.catch_warnings():  # torch.jit is deprecated but still the portable format
            warnings.filterwarnings("ignore", category=FutureWarning)
            traced = torch.jit.load(str(out / TORCHSCRIPT_FILE))
        with torch.no_grad():
            done["torchscript"]["max_abs_diff"] = _diff(traced(check), expected)
    if "onnx" in formats:
        done["onnx"] = write_onnx(frozen, out / ONNX_FILE, example)
        done["onnx"]["max_abs_diff"] = onnx_max_abs_diff(out / ONNX_FILE, check, expected)
    if "hf" in formats:
        done["hf"] = _write_hf(frozen, loaded, config, out, check)
    (out / FORMATS_FILE).write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
    return done


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def write_torchscript(frozen: FrozenEncoder, path: Path, example: torch.Tensor) -> dict[str, Any]:
    """torch.jit.trace of the bare encoder at the example's shape (batch size stays free)."""
    with torch.no_grad(), warnings.catch_warnings():
        # Constants folded into the trace (RoPE sign pattern, token ids) are shape-fixed by
        # design: the traced file is documented as valid for this T x H x W only.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit is deprecated
        traced = torch.jit.trace(frozen.encoder, (example,), check_trace=False)
    traced.save(str(path))
    return {"file": path.name, "traced_input_shape": list(example.shape)}


def write_onnx(frozen: FrozenEncoder, path: Path, example: torch.Tensor) -> dict[str, Any]:
    """ONNX via the TorchScript-based exporter (no onnxscript needed), dynamic batch axis."""
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter warns that it is legacy and that traced shape checks become
        # constants; the geometry is fixed by design and the batch axis stays dynamic.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            frozen.encoder,
            (example,),
            str(path),
            dynamo=False,
            input_names=["video"],
            output_names=["tokens"],
            dynamic_axes={"video": {0: "batch"}, "tokens": {0: "batch"}},
            opset_version=17,
        )
    return {"file": path.name, "input": "video [B,3,T,H,W]", "output": "tokens [B,N,D]"}


def onnx_max_abs_diff(path: Path, x: torch.Tensor, expected: torch.Tensor) -> float | None:
    """Run the ONNX file with onnxruntime (None when onnxruntime is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (tokens,) = session.run(None, {"video": x.numpy()})
    return _diff(torch.from_numpy(tokens), expected)


def _write_hf(
    frozen: FrozenEncoder, loaded: Loaded, config: dict[str, Any], out: Path, x: torch.Tensor
) -> dict[str, Any]:
    from vjepa.hf import hf_max_abs_diff, write_hf

    predictor = loaded.extras.get("predictor")
    hf_dir = write_hf(out / HF_DIR, loaded.state, config, predictor_state=predictor)
    try:
        diff: float | None = hf_max_abs_diff(hf_dir, frozen.encoder, x)
    except ImportError:  # transformers is an optional extra: the folder is still written
        diff = None
    return {"folder": HF_DIR, "with_predictor": predictor is not None, "max_abs_diff": diff}


# ----------------------------------------------------------------------------------------
# Model card
# ----------------------------------------------------------------------------------------


def model_card(
    config: dict[str, Any], *, formats: dict[str, dict[str, Any]], probe: dict[str, Any] | None
) -> str:
    """The README.md of an export folder: what it is, how it was trained, how to load it."""
    arch, src = config["architecture"], config["source"]
    lines = [
        f"# V-JEPA {config['which']} {'module' if config['which'] == 'predictor' else 'encoder'}",
        "",
        "Exported by `vjepa export` (format version "
        f"{config['format_version']}). Weights: `{WEIGHTS_FILE}`; architecture: `{CONFIG_FILE}`.",
        "",
        "## Architecture",
        "",
        "| " + " | ".join(sorted(arch)) + " |",
        "|" + "---|" * len(arch),
        "| " + " | ".join(str(arch[k]) for k in sorted(arch)) + " |",
        "",
        *_training_lines(src),
        *_probe_lines(probe),
        *_format_lines(formats),
    ]
    if config["which"] != "predictor":
        lines += _usage_lines(config)
    return "\n".join(lines) + "\n"


def _training_lines(src: dict[str, Any]) -> list[str]:
    lines = ["## Training", "", f"- source: {src['kind']} (`{src['path']}`)"]
    if src.get("step") is not None:
        lines.append(f"- optimizer steps: {src['step']}")
    if src.get("samples_seen") is not None:
        lines.append(f"- clips seen: {src['samples_seen']}")
    data = src.get("data")
    if data:
        count = data.get("num_samples")
        suffix = f" ({count} videos)" if count is not None else ""
        lines.append(f"- training data: `{data['shards']}`{suffix}")
    for key, value in (src.get("config") or {}).items():
        lines.append(f"- {key}: {value}")
    return [*lines, ""]


def _probe_lines(probe: dict[str, Any] | None) -> list[str]:
    if probe is None:
        return []
    rows = [(k, v) for k, v in probe.items() if isinstance(v, (int, float, str, bool))]
    lines = ["## Frozen-backbone probe", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows]
    return [*lines, ""]


def _format_lines(formats: dict[str, dict[str, Any]]) -> list[str]:
    if not formats:
        return []
    lines = ["## Other formats", "", "| format | file | max abs diff to PyTorch |", "|---|---|---|"]
    for name, info in formats.items():
        diff = info.get("max_abs_diff")
        shown = "not checked" if diff is None else f"{diff:.2e}"
        lines.append(f"| {name} | `{info.get('file', info.get('folder'))}` | {shown} |")
    if "hf" in formats:
        lines += [
            "",
            "`transformers.VJEPA2Model.from_pretrained('hf')` takes `pixel_values_videos` as "
            "[B, T, 3, H, W] (frames before channels).",
        ]
    return [*lines, ""]


def _usage_lines(config: dict[str, Any]) -> list[str]:
    arch, norm = config["architecture"], config["normalization"]
    return [
        "## How to load",
        "",
        "```python",
        "import vjepa",
        "encoder = vjepa.load_encoder('THIS_FOLDER')  # strict; eval mode; no grads",
        f"x = encoder.preprocess(frames)  # uint8 [T,H,W,3] -> [1,3,T,{arch['img_size']},"
        f"{arch['img_size']}]",
        "tokens = encoder(x)  # [1, N, D] with D = " + str(arch["width"]),
        "embedding = encoder.pool(tokens)  # [1, D]",
        "```",
        "",
        f"Input: {arch['num_frames']} RGB frames at {arch['img_size']}x{arch['img_size']}, "
        f"scaled to [0, 1] and normalised with mean {norm['mean']} and std {norm['std']}.",
        "",
    ]
