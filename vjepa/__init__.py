"""vjepa."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from vjepa.artifacts.sources import FrozenEncoder
    from vjepa.world.model import WorldModel


def load_encoder(
    path: str | Path,
    *,
    num_heads: int | None = None,
    device: str | torch.device = "cpu",
    which: Literal["target", "context"] | None = None,
) -> FrozenEncoder:
    """Load a frozen encoder (export folder, run / checkpoint folder or official file).

    A thin wrapper so ``import vjepa`` stays cheap (torch loads on first call); see
    :func:`vjepa.artifacts.sources.load_encoder`.
    """
    from vjepa.artifacts.sources import load_encoder as _load_encoder

    return _load_encoder(path, num_heads=num_heads, device=device, which=which)


def load_world_model(path: str | Path, *, device: str | torch.device = "cpu") -> WorldModel:
    """Load a world model (a `vjepa world train` run folder, one of its checkpoints, or a world
    export folder): ``.encode(frames)``, ``.rollout(z, actions)``, ``.plan(obs, goal_obs)``.

    See :func:`vjepa.world.model.load_world_model`.
    """
    from vjepa.world.model import load_world_model as _load_world_model

    return _load_world_model(path, device=device)
