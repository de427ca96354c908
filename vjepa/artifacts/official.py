"""Read official V-JEPA (facebookresearch/jepa) and V-JEPA 2 (facebookresearch/vjepa2) checkpoints.

An official file is a ``torch.save`` dict with ``encoder``, ``predictor`` and (usually)
``target_encoder`` state dicts whose keys carry ``module.`` (DDP) and ``backbone.`` (the
multi-mask wrapper) prefixes. After stripping them the names equal ours, so building our
modules is: infer the architecture from the tensor shapes, construct, load strictly.

Attention heads cannot be read from weights; they come from the official size table by
width (and position mode: V-JEPA 2's ViT-g has 22 heads, V-JEPA's 16) or from the
``num_heads`` / ``pred_num_heads`` arguments.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from vjepa.errors import UsageError
from vjepa.models.encoder import VisionTransformer
from vjepa.models.layers import sincos_pos_embed_3d
from vjepa.models.predictor import Predictor

log = logging.getLogger(__name__)

State = dict[str, Tensor]
_PREFIXES = ("module.", "backbone.")

# (width, pos mode) -> heads of the official encoders (jepa: vit_*, vjepa2: vit_*_xformers).
_HEADS_BY_WIDTH: dict[tuple[int, str], int] = {
    **{
        (w, mode): h
        for w, h in [(192, 3), (384, 6), (768, 12), (1024, 16), (1280, 16)]
        for mode in ("sincos", "rope")
    },
    (1408, "sincos"): 16,  # V-JEPA vit_giant
    (1408, "rope"): 22,  # V-JEPA 2 vit_giant_xformers
    (1664, "sincos"): 16,
    (1664, "rope"): 26,
}
# V-JEPA 2 configs set pred_num_heads=12 for their 384-wide predictors; V-JEPA uses the
# encoder's heads for the predictor (init_video_model forces it).
_V2_PRED_HEADS = {384: 12}
_V2_DEFAULT_FRAMES, _V2_DEFAULT_SIZE = 16, 256
_HEADS_FLAGS = {  # where a user sets each count
    "num_heads": "vjepa export / import / extract --num-heads, probe.num_heads, surprise.num_heads",
    "pred_num_heads": "vjepa export / import --pred-num-heads, surprise.pred_num_heads",
}  # V-JEPA 2 pretraining clip (RoPE: geometry-free)


class CheckpointFormatError(UsageError):
    """An official checkpoint that cannot be read or does not fit our modules; names the key."""


class WeightsMismatchError(CheckpointFormatError):
    """Weights that do not fit the architecture: the message names the offending keys."""


@dataclass(frozen=True)
class OfficialArch:
    """Architecture inferred from the tensor shapes of an official checkpoint."""

    width: int
    depth: int
    mlp_ratio: float
    patch_size: int
    tubelet_size: int
    pos_embed: Literal["sincos", "rope"]
    grid: tuple[int, int, int] | None  # (t, h, w) of the stored sin-cos table; None for RoPE
    pred_width: int | None
    pred_depth: int | None
    pred_mlp_ratio: float | None
    num_mask_tokens: int | None


@dataclass
class OfficialCheckpoint:
    """The state dicts of an official file, prefixes stripped."""

    path: Path
    flavour: Literal["jepa", "vjepa2"]  # V-JEPA (sin-cos) or V-JEPA 2 (RoPE)
    target_encoder: State  # the encoder to use: target_encoder if stored, else encoder
    encoder: State | None  # the online (context) encoder, if stored
    predictor: State | None
    arch: OfficialArch
    source_key: str  # which top-level entry target_encoder came from


def strip_prefixes(state: State) -> State:
    """Drop leading ``module.`` / ``backbone.`` (any order, any repeat) from every key."""
    out = {}
    for key, value in state.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def load_state_strict(module: nn.Module, state: State, what: str) -> None:
    """``load_state_dict(strict=True)`` whose error names every missing, unexpected, mis-shaped key.

    A module built on the meta device (no memory, no random init) gets the tensors assigned,
    cast to its dtype, instead of copied.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {', '.join(shapes)}")
    if problems:
        raise WeightsMismatchError(f"{what}: " + "; ".join(problems))
    meta = any(t.is_meta for t in expected.values())
    if meta:
        state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=meta)


def read_official(path: str | Path) -> OfficialCheckpoint:
    """Load an official file (``weights_only=True``), strip prefixes, infer the architecture."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors: a user gave the wrong file
        # torch's own message is a page long; say what matters in one line
        raise CheckpointFormatError(
            f"{path}: not a checkpoint that loads with torch.load(weights_only=True) "
            f"({type(err).__name__}); only tensors, numbers, strings and dicts are read"
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointFormatError(f"{path}: top level is {type(raw).__name__}, not a dict")
    if all(isinstance(v, Tensor) for v in raw.values()):
        raw = {"encoder": raw}  # a bare encoder state dict
    states = {
        k: strip_prefixes(raw[k])
        for k in ("target_encoder", "encoder", "predictor")
        if isinstance(raw.get(k), dict)
    }
    source = "target_encoder" if "target_encoder" in states else "encoder"
    if source not in states:
        raise CheckpointFormatError(
            f"{path}: no encoder state (expected a 'target_encoder' or 'encoder' entry; "
            f"found {', '.join(map(str, raw)) or 'nothing'})"
        )
    arch = infer_arch(states[source], states.get("predictor"), what=str(path))
    return OfficialCheckpoint(
        path=path,
        flavour="jepa" if arch.pos_embed == "sincos" else "vjepa2",
        target_encoder=states[source],
        encoder=states.get("encoder"),
        predictor=states.get("predictor"),
        arch=arch,
        source_key=source,
    )


def _need(state: State, key: str, what: str) -> Tensor:
    if key not in state:
        raise CheckpointFormatError(f"{what}: missing key {key} (not a V-JEPA ViT?)")
    return state[key]


def _count(state: State, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def infer_arch(encoder: State, predictor: State | None, what: str) -> OfficialArch:
    """Sizes from tensor shapes: widths, depths, patch / tubelet, mlp ratios, position mode."""
    proj = _need(encoder, "patch_embed.proj.weight", what)  # [D, 3, t, p, p]
    width, tubelet, patch = proj.shape[0], proj.shape[2], proj.shape[3]
    fc1 = _need(encoder, "blocks.0.mlp.fc1.weight", what)  # [hidden, D]
    pos = "sincos" if "pos_embed" in encoder else "rope"
    grid = _sincos_grid(encoder["pos_embed"][0], what) if pos == "sincos" else None
    pred_width = pred_depth = pred_ratio = masks = None
    if predictor is not None:
        pred_width = _need(predictor, "predictor_embed.weight", what).shape[0]
        pred_depth = _count(predictor, r"predictor_blocks\.(\d+)\.")
        hidden = _need(predictor, "predictor_blocks.0.mlp.fc1.weight", what).shape[0]
        pred_ratio = hidden / pred_width
        masks = _count(predictor, r"mask_tokens\.(\d+)$")
    return OfficialArch(
        width=width,
        depth=_count(encoder, r"blocks\.(\d+)\."),
        mlp_ratio=fc1.shape[0] / width,
        patch_size=patch,
        tubelet_size=tubelet,
        pos_embed=pos,
        grid=grid,
        pred_width=pred_width,
        pred_depth=pred_depth,
        pred_mlp_ratio=pred_ratio,
        num_mask_tokens=masks,
    )


def _sincos_grid(table: Tensor, what: str) -> tuple[int, int, int]:
    """(t, h, w) of a stored sin-cos table: count distinct rows of each axis' channel block."""
    n, dim = table.shape
    d = 2 * -(-dim // 6)  # per-axis channels, 2*ceil(dim/6)
    sizes = [
        torch.unique(table[:, a * d : min((a + 1) * d, dim)].round(decimals=4), dim=0).shape[0]
        for a in range(3)
    ]
    grid = (sizes[0], sizes[1], sizes[2])
    expected = sincos_pos_embed_3d(grid, dim)
    if grid[0] * grid[1] * grid[2] != n or not torch.allclose(table.float(), expected, atol=1e-4):
        raise CheckpointFormatError(f"{what}: pos_embed [{n}, {dim}] is not a 3D sin-cos table")
    return grid


def default_heads(width: int, pos_embed: str) -> int | None:
    """Heads of the official encoder of this width (None when the width is not official)."""
    return _HEADS_BY_WIDTH.get((width, pos_embed))


def guess_heads(width: int) -> int:
    """Head dim 64, the official models' (heads = width // 64, at least 1), lowered to a divisor."""
    heads = max(1, width // 64)
    while width % heads:
        heads -= 1
    return heads


def resolve_heads(width: int, given: int | None, known: int | None, what: str, key: str) -> int:
    """Heads of one module: ``given`` (checked), else ``known``, else a head-dim-64 guess.

    The weights do not fix the head count (qkv is [3D, D] whatever it is), so a guess loads
    but computes other features than the model was trained with: it is said in one line.
    """
    if given is not None:
        if given < 1 or width % given:
            raise CheckpointFormatError(f"{what}: {key}={given} does not divide its width {width}")
        return given
    if known is not None:
        return known
    heads = guess_heads(width)
    where = _HEADS_FLAGS.get(key, key)
    log.warning(
        "%s: width %d is not an official size, so its head count is not known; guessing %d "
        "(head dim %d): set %s (%s) if it was trained with another", what, width, heads,
        width // heads, key, where,
    )  # fmt: skip
    return heads


def build_from_official(
    ckpt: OfficialCheckpoint,
    *,
    num_heads: int | None = None,
    pred_num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> tuple[VisionTransformer, Predictor | None]:
    """Our encoder (from ``ckpt.target_encoder``) and predictor, loaded strictly.

    Head counts, separately for the two modules: ``num_heads`` / ``pred_num_heads`` when given,
    else the official model's (encoder by width; predictor: V-JEPA 2's 384-wide predictors
    have 12, otherwise V-JEPA's rule, the encoder's count, when it divides the predictor
    width), else a head-dim-64 guess said in one line (:func:`resolve_heads`).

    Sin-cos models are built at the stored table's geometry, so the table loads exactly (their
    forward resamples it for other clip sizes); ``num_frames`` / ``img_size`` are then ignored.
    RoPE models have no table: the geometry defaults to V-JEPA 2's 16 x 256 and only matters
    for the predictor (its square-grid position split) and bookkeeping.
    """
    arch = ckpt.arch
    official = default_heads(arch.width, arch.pos_embed)
    heads = resolve_heads(arch.width, num_heads, official, f"{ckpt.path} encoder", "num_heads")
    if arch.grid is not None:
        frames, size = arch.grid[0] * arch.tubelet_size, arch.grid[1] * arch.patch_size
    else:
        frames = num_frames if num_frames is not None else _V2_DEFAULT_FRAMES
        size = img_size if img_size is not None else _V2_DEFAULT_SIZE
    # the clip geometry, the same for the encoder and the predictor
    geometry = dict(
        img_size=size,
        num_frames=frames,
        patch_size=arch.patch_size,
        tubelet_size=arch.tubelet_size,
        pos_embed=arch.pos_embed,
    )
    encoder = VisionTransformer(
        width=arch.width, depth=arch.depth, heads=heads, mlp_ratio=arch.mlp_ratio, **geometry
    )
    load_state_strict(encoder, ckpt.target_encoder, f"{ckpt.path} [{ckpt.source_key}]")
    if ckpt.predictor is None:
        return encoder, None
    known = _V2_PRED_HEADS.get(arch.pred_width) if arch.pos_embed == "rope" else None
    if known is None and arch.pred_width % heads == 0:
        known = heads  # V-JEPA's init_video_model gives the predictor the encoder's heads
    what = f"{ckpt.path} predictor"
    pred_num_heads = resolve_heads(arch.pred_width, pred_num_heads, known, what, "pred_num_heads")
    predictor = Predictor(
        embed_dim=arch.width,
        width=arch.pred_width,
        depth=arch.pred_depth,
        heads=pred_num_heads,
        num_mask_tokens=arch.num_mask_tokens,
        mlp_ratio=arch.pred_mlp_ratio,
        **geometry,
    )
    load_state_strict(predictor, ckpt.predictor, f"{ckpt.path} [predictor]")
    return encoder, predictor
