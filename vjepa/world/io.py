"""World-model export: ``config.json`` (kind ``world_model``) + ``encoder.safetensors`` +
``predictor.safetensors`` (+ a short README.md), readable by :func:`vjepa.load_world_model`
without unpickling anything.

``config.json`` holds the spec (frame size, pooling, window, frameskip, action bounds, state
size, env), the encoder's architecture and normalisation and the predictor's architecture;
``encoder.safetensors`` has the bare ViT keys of vjepa.models.encoder (as an encoder export).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from vjepa.world.model import (
    ENCODER_WEIGHTS,
    EXPORT_CONFIG,
    PREDICTOR_WEIGHTS,
    PROJECTOR_WEIGHTS,
    load_world_model,
    world_description,
)


def export_world_model(src: str | Path, out_dir: str | Path) -> Path:
    """Export the world model of ``src`` (run folder, checkpoint or export) into ``out_dir``."""
    model = load_world_model(src)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def plain(module) -> dict:
        return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}

    save_file(plain(model.encoder.encoder), str(out / ENCODER_WEIGHTS))
    save_file(plain(model.predictor), str(out / PREDICTOR_WEIGHTS))
    if model.projector is not None:  # end-to-end models (spec.latent_dim > 0)
        save_file(plain(model.projector), str(out / PROJECTOR_WEIGHTS))
    desc = world_description(model) | {"exported_from": str(src)}
    (out / EXPORT_CONFIG).write_text(json.dumps(desc, indent=2) + "\n")
    spec = model.spec
    (out / "README.md").write_text(
        "# vjepa world model\n\n"
        f"Action-conditioned predictor over a frozen encoder; env `{spec.env}`, "
        f"{spec.action_dim}-d actions x frameskip {spec.frameskip}, frames {spec.frame_size} px, "
        f"token map pooled x{spec.pool}, context window {spec.window} frames.\n\n"
        "```python\nimport vjepa\nwm = vjepa.load_world_model(PATH)\n"
        "z = wm.encode(frames)            # uint8 [B, T, H, W, 3] -> [B, T, N, D]\n"
        "z_next = wm.rollout(z[:, -1:], actions)   # actions [B, H, A]\n"
        "plan = wm.plan(obs, goal_obs)    # [horizon, A]; execute plan[0]\n```\n"
    )
    return out
