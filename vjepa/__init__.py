"""vjepa.

The two entry points load lazily, so ``import vjepa`` stays cheap (torch loads on first use):

- :func:`vjepa.load_encoder` is :func:`vjepa.artifacts.encoder.load_encoder`: a frozen encoder
  (export folder, run / checkpoint folder or official file); of a run, the encoder that trained
  unless ``which`` says otherwise.
- :func:`vjepa.load_classifier` is :func:`vjepa.artifacts.classifier.load_classifier`: a
  fine-tuned classifier (a `vjepa finetune` run folder, one of its checkpoints, or its export)
  returning logits, with ``.label_names``.
- :func:`vjepa.load_world_model` is :func:`vjepa.world.io.load_world_model`: a world model (a
  `vjepa world train` run folder, one of its checkpoints, or a world export folder) with
  ``.encode(frames)``, ``.rollout(z, actions)``, ``.plan(obs, goal_obs)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vjepa.artifacts.classifier import load_classifier
    from vjepa.artifacts.encoder import load_encoder
    from vjepa.world.io import load_world_model

_LAZY = {
    "load_classifier": "vjepa.artifacts.classifier",
    "load_encoder": "vjepa.artifacts.encoder",
    "load_world_model": "vjepa.world.io",
}
__all__ = ["load_classifier", "load_encoder", "load_world_model"]


def __getattr__(name: str) -> Any:
    """The entry points of ``_LAZY``, imported on first use (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vjepa' has no attribute {name!r}")
