"""vjepa."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from vjepa.export import FrozenEncoder


def load_encoder(
    path: str | Path,
    *,
    num_heads: int | None = None,
    device: str | torch.device = "cpu",
    which: Literal["target", "context"] | None = None,
) -> FrozenEncoder:
    """Load a frozen encoder (export folder, run / checkpoint folder or official file).

    A thin wrapper so ``import vjepa`` stays cheap (torch loads on first call); see
    :func:`vjepa.export.load_encoder`.
    """
    from vjepa.export import load_encoder as _load_encoder

    return _load_encoder(path, num_heads=num_heads, device=device, which=which)
