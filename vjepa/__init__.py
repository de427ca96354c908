"""vjepa."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from vjepa.artifacts.encoder import VideoEncoder
    from vjepa.world.model import WorldModel


def load_encoder(
    path: str | Path,
    *,
    num_heads: int | None = None,
    device: str | torch.device = "cpu",
    which: Literal["target", "context"] | None = None,
) -> VideoEncoder:
    """Load a frozen encoder (export folder, run / checkpoint folder or official file); of a
    run, the encoder that trained unless ``which`` says otherwise.

    A thin wrapper so ``import vjepa`` stays cheap (torch loads on first call); see
    :func:`vjepa.artifacts.encoder.load_encoder`.
    """
    from vjepa.artifacts.encoder import load_encoder as _load_encoder

    return _load_encoder(path, num_heads=num_heads, device=device, which=which)


def load_world_model(path: str | Path, *, device: str | torch.device = "cpu") -> WorldModel:
    """Load a world model (a `vjepa world train` run folder, one of its checkpoints, or a world
    export folder): ``.encode(frames)``, ``.rollout(z, actions)``, ``.plan(obs, goal_obs)``.

    See :func:`vjepa.world.io.load_world_model`.
    """
    from vjepa.world.io import load_world_model as _load_world_model

    return _load_world_model(path, device=device)
