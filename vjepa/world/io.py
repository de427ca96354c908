"""World-model files: the description (``world.json`` of a run, ``config.json`` of an export),
loading (:func:`load_world_model`), export and the random-init twin of ``vjepa plan``.

A world export is ``config.json`` (kind ``world_model``) + ``encoder.safetensors`` +
``predictor.safetensors`` (+ ``projector.safetensors`` end to end, + ``tempo.safetensors``
with a temporal-distance head, vjepa.world.tempo, + a short README.md),
readable without unpickling anything. ``config.json`` holds the spec (frame size, pooling,
window, frameskip, action bounds, state size, env), the encoder's architecture and
normalisation and the predictor's architecture; ``encoder.safetensors`` has the bare ViT keys
of vjepa.models.encoder (as an encoder export). Which path holds what is
:func:`vjepa.artifacts.sources.read_world`'s job.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vjepa.artifacts.arch import build_encoder_from_arch, encoder_arch
from vjepa.artifacts.encoder import VideoEncoder
from vjepa.artifacts.encoder import random_encoder as random_video_encoder
from vjepa.artifacts.official import load_state_strict
from vjepa.artifacts.sources import (
    CONFIG_FILE,
    WORLD_ENCODER,
    WORLD_FILE,
    WORLD_PREDICTOR,
    WORLD_PROJECTOR,
    WorldModelSourceError,
    read_world,
)
from vjepa.world.model import WorldModel, WorldSpec
from vjepa.world.predictor import ACPredictor
from vjepa.world.tempo import TEMPO_FILE, TempoHead, load_tempo, save_tempo, tempo_step

FORMAT_VERSION = 1
EXPORT_CONFIG = CONFIG_FILE  # in an export folder, with "kind": "world_model"
ENCODER_WEIGHTS = WORLD_ENCODER
PREDICTOR_WEIGHTS = WORLD_PREDICTOR
PROJECTOR_WEIGHTS = WORLD_PROJECTOR

__all__ = [
    "ENCODER_WEIGHTS",
    "EXPORT_CONFIG",
    "FORMAT_VERSION",
    "PREDICTOR_WEIGHTS",
    "PROJECTOR_WEIGHTS",
    "WORLD_FILE",
    "WorldModelSourceError",
    "export_world_model",
    "load_world_model",
    "random_encoder",
    "random_init_like",
    "world_description",
]


def random_encoder_arch(name: str, *, patch_size: int, tubelet_size: int, img_size: int) -> dict:
    """The architecture ``world.encoder: random`` builds: size ``name``, RoPE, one tubelet."""
    return encoder_arch(
        name,
        patch_size=patch_size,
        tubelet_size=tubelet_size,
        num_frames=tubelet_size,
        img_size=img_size,
        pos_embed="rope",
    )


def random_encoder(
    name: str, *, patch_size: int, tubelet_size: int, img_size: int, seed: int
) -> VideoEncoder:
    """A seeded random-init frozen frame encoder of :func:`random_encoder_arch`:
    :func:`vjepa.artifacts.encoder.random_encoder` with the world's architecture."""
    arch = random_encoder_arch(
        name, patch_size=patch_size, tubelet_size=tubelet_size, img_size=img_size
    )
    return random_video_encoder(arch, seed)


def world_description(model: WorldModel) -> dict:
    """world.json of a run / config.json of an export: everything but the weights."""
    enc = model.encoder
    return {
        "format_version": FORMAT_VERSION,
        "kind": "world_model",
        "spec": asdict(model.spec),
        "encoder": {
            "architecture": enc.config["architecture"],
            "normalization": enc.config["normalization"],
            "source": model.spec.encoder_source,
        },
        "predictor": model.predictor.arch(),
    }


def load_world_model(path: str | Path, *, device: str | torch.device = "cpu") -> WorldModel:
    """The WorldModel of a world export folder, a world train run folder (latest checkpoint)
    or a checkpoint folder of one; strict loads (a wrong key is an error naming it)."""
    desc, folder = read_world(path)
    enc_desc = desc["encoder"]
    vit = build_encoder_from_arch(enc_desc["architecture"])
    enc_state = load_file(str(folder / ENCODER_WEIGHTS))
    # Exports and checkpoints hold the bare ViT keys; checkpoints written before that, the
    # VideoEncoder child's ("encoder.<vit key>"): still read.
    if enc_state and all(k.startswith(VideoEncoder.checkpoint_prefix) for k in enc_state):
        enc_state = {
            k.removeprefix(VideoEncoder.checkpoint_prefix): v for k, v in enc_state.items()
        }
    load_state_strict(vit, enc_state, f"{folder / ENCODER_WEIGHTS} (world model encoder)")
    encoder = VideoEncoder(
        vit,
        {"architecture": enc_desc["architecture"], "normalization": enc_desc["normalization"]},
        source=str(enc_desc.get("source", "")),
        weights_file=folder / ENCODER_WEIGHTS,
    ).freeze()
    arch = dict(desc["predictor"])
    arch["grid_hw"] = tuple(arch["grid_hw"])
    predictor = ACPredictor(**arch)
    load_state_strict(
        predictor,
        load_file(str(folder / PREDICTOR_WEIGHTS)),
        f"{folder / PREDICTOR_WEIGHTS} (world model predictor)",
    )
    model = WorldModel(encoder, predictor, WorldSpec(**desc["spec"]))
    if model.projector is not None:
        load_state_strict(
            model.projector,
            load_file(str(folder / PROJECTOR_WEIGHTS)),
            f"{folder / PROJECTOR_WEIGHTS} (world model latent projector)",
        )
    model.tempo = find_tempo(folder)
    return model.to(device).eval()


def find_tempo(folder: Path) -> TempoHead | None:
    """The temporal-distance head of the weights in ``folder``: ``tempo.safetensors`` of an
    export folder, or of the run folder when it was fitted on this checkpoint; else None."""
    if (folder / TEMPO_FILE).is_file():
        return load_tempo(folder / TEMPO_FILE)
    run_file = folder.parent.parent / TEMPO_FILE
    step = re.fullmatch(r"step-(\d+)", folder.name)
    if step and (folder.parent.parent / WORLD_FILE).is_file() and run_file.is_file():
        if tempo_step(run_file) == int(step.group(1)):
            return load_tempo(run_file)
    return None


def random_init_like(model: WorldModel, *, seed: int = 0) -> WorldModel:
    """A world model of ``model``'s architecture and spec with every weight (encoder included)
    re-initialised from ``seed``: the ``random_model`` baseline of ``vjepa plan``."""
    gen = torch.Generator().manual_seed(seed)
    encoder = random_video_encoder(
        model.encoder.config["architecture"], gen, source=f"random seed {seed}"
    )
    encoder.config = dict(model.encoder.config)
    p_arch = model.predictor.arch()
    p_arch["grid_hw"] = tuple(p_arch["grid_hw"])
    predictor = ACPredictor(**p_arch, generator=gen)
    twin = WorldModel(encoder, predictor, model.spec, generator=gen)
    if model.tempo is not None:  # a random-init head of the same size
        twin.tempo = TempoHead(**model.tempo.arch())
        with torch.no_grad():
            for name, p in twin.tempo.mlp.named_parameters():
                if name.endswith("weight"):
                    p.normal_(0.0, p.shape[1] ** -0.5, generator=gen)
                else:
                    p.zero_()
    return twin.to(model.device).eval()


def export_world_model(src: str | Path, out_dir: str | Path) -> Path:
    """Export the world model of ``src`` (run folder, checkpoint or export) into ``out_dir``."""
    model = load_world_model(src)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def plain(module: nn.Module) -> dict:
        return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}

    save_file(plain(model.encoder.encoder), str(out / ENCODER_WEIGHTS))
    save_file(plain(model.predictor), str(out / PREDICTOR_WEIGHTS))
    if model.projector is not None:  # end-to-end models (spec.latent_dim > 0)
        save_file(plain(model.projector), str(out / PROJECTOR_WEIGHTS))
    if model.tempo is not None:  # the temporal-distance head (world.tempo)
        save_tempo(model.tempo, out / TEMPO_FILE)
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
