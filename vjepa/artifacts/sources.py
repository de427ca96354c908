"""Read any supported source and rebuild its module strictly: the loading half of export.

Sources: an export folder (see :mod:`vjepa.artifacts`), a run folder or checkpoint folder of ours,
or an official V-JEPA / V-JEPA 2 ``.pt`` file. :func:`read_source` reads weights, architecture
and provenance without building anything; :func:`load_encoder` builds the encoder, loads
strictly (a missing, unexpected or mis-shaped key is a :class:`WeightsMismatchError` naming it)
and returns a :class:`FrozenEncoder`. Reading an export folder or one of our checkpoints needs
only safetensors and never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from vjepa.artifacts.official import WeightsMismatchError, load_state_strict
from vjepa.data.augment import IMAGENET_MEAN, IMAGENET_STD
from vjepa.errors import UsageError

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
    pred_num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
    with_extras: bool = False,
) -> Loaded:
    """Read the ``which`` module of any supported source (no module is built here).

    ``which=None``: the module an export folder holds, else the target encoder.
    ``num_heads`` / ``pred_num_heads``: attention heads of the encoders / the predictor. Needed
    only for official files of a non-official width; when not given, the official count, else
    a head-dim-64 guess said in one line (:func:`vjepa.artifacts.official.resolve_heads`). For our own
    runs and exports they override the stored counts.
    ``num_frames`` / ``img_size`` set the clip geometry recorded for a RoPE model (sin-cos
    models keep their stored table's; both accept other clip sizes at run time).
    ``with_extras`` also reads the companion predictor (and, for official files, context encoder).
    """
    path = Path(path)
    kind = source_kind(path)
    if kind == "export":
        loaded = _read_export(path if path.is_dir() else path.parent, which, with_extras)
    elif kind == "official":
        heads = (num_heads, pred_num_heads)
        loaded = _read_official(path, which or "target", heads, num_frames, img_size, with_extras)
    else:
        folder = path if kind == "checkpoint" else _latest(path)
        loaded = _read_checkpoint(folder, which or "target", with_extras)
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
    from vjepa.train.checkpoint import latest_checkpoint

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

    ``heads``: (encoder, predictor) head counts or None (see :func:`read_source`).
    """
    from vjepa.artifacts.official import build_from_official, read_official

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
    naming it. ``num_heads``: for official files of a non-official width (default: a
    head-dim-64 guess, said in one line). ``which``: ``context`` for the online encoder of a run or
    official file (default: the target encoder, or whatever encoder an export folder holds).
    Returns a module in eval mode with ``requires_grad`` False.
    """
    loaded = read_source(path, which=which, num_heads=num_heads)  # the encoder only
    return frozen_encoder(loaded, str(path)).to(device)


def frozen_encoder(loaded: Loaded, source: str) -> FrozenEncoder:
    if loaded.which == "predictor":
        raise ExportSourceError(f"{source}: holds a predictor, not an encoder")
    encoder = build_encoder_from_arch(loaded.arch)
    load_state_strict(encoder, loaded.state, f"{source} ({loaded.which} encoder)")
    return FrozenEncoder(
        encoder, config_json(loaded), source=source, weights_file=loaded.weights_file
    )
