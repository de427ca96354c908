"""The video encoder as every reader gets it: :class:`VideoEncoder`, :func:`load_encoder` and
:func:`random_encoder` (the one random-init floor), plus :func:`frames_to_input`.

``VideoEncoder`` wraps a VisionTransformer with its input contract (architecture and
normalisation from config.json). It always runs in eval mode (no dropout / drop-path);
:meth:`VideoEncoder.freeze` also turns its gradients off, as every reader but the end-to-end
world training wants.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from vjepa.artifacts.arch import arch_of, build_encoder_from_arch, vit_from_arch
from vjepa.artifacts.official import load_state_strict
from vjepa.artifacts.sources import ExportSourceError, Loaded, config_json, read
from vjepa.data.augment import eval_transform, imagenet_normalization, normalize


def frames_to_input(
    frames: np.ndarray | torch.Tensor,
    img_size: int,
    *,
    normalization: dict[str, list[float]] | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """uint8 frames [T,H,W,3] or [B,T,H,W,3] -> [B,3,T,S,S] normalised float on ``device``.

    Exactly the evaluation transform of the data pipeline (short side to ``img_size``,
    antialiased bilinear on uint8, centre crop), then the normalisation (default ImageNet), so
    features match ``vjepa probe``'s. The frame count is kept as given.
    """
    video = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if video.dtype != np.uint8 or video.ndim not in (4, 5) or video.shape[-1] != 3:
        raise ValueError(
            f"preprocess expects uint8 frames [T,H,W,3] or [B,T,H,W,3], "
            f"got {video.dtype} {tuple(video.shape)}"
        )
    clips = video[None] if video.ndim == 4 else video
    x = torch.cat([eval_transform(c, crop_size=img_size, normalize=False) for c in clips])
    x = x.to(device)  # [B, 3, T, S, S] uint8: 4x less to copy than float
    norm = normalization or imagenet_normalization()
    return normalize(x, mean=norm["mean"], std=norm["std"])  # [B, 3, T, S, S] float


class VideoEncoder(nn.Module):
    """An encoder in eval mode plus its input contract.

    ``forward(x [B,3,T,H,W] float, normalised) -> [B,N,D]`` token features.
    ``preprocess`` turns uint8 frames into that input; ``pool`` averages the tokens.
    """

    # A training checkpoint stores this module's file with the bare ViT keys (as an export):
    # vjepa.train.checkpoint drops this prefix on save and puts it back on restore.
    checkpoint_prefix = "encoder."

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
        self.eval()

    def freeze(self) -> VideoEncoder:
        """No trainable parameters (every reader but end-to-end world training); returns self."""
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> VideoEncoder:
        # Always eval: a probe calling .train() on its wrapper, or the end-to-end world
        # training, must not switch this backbone's layers (dropout / drop-path) to training.
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
        """uint8 frames [T,H,W,3] or [B,T,H,W,3] -> [B,3,T,S,S]: :func:`frames_to_input`."""
        norm = self.config["normalization"]
        return frames_to_input(frames, self.img_size, normalization=norm, device=self.mean.device)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_encoder(
    path: str | Path,
    *,
    num_heads: int | None = None,
    device: str | torch.device = "cpu",
    which: Literal["target", "context"] | None = None,
) -> VideoEncoder:
    """Load a frozen encoder from an export folder, run / checkpoint folder or official file.

    Strict: a missing, unexpected or mis-shaped key raises :class:`WeightsMismatchError`
    naming it. ``num_heads``: for official files of a non-official width (default: a
    head-dim-64 guess, said in one line). ``which``: the encoder of a run or official file
    (default: the one that trained, see :func:`vjepa.artifacts.sources.read`; whatever an
    export folder holds). Returns a module in eval mode with ``requires_grad`` False.
    """
    loaded = read(path, which=which, num_heads=num_heads)  # the encoder only
    return encoder_from(loaded, str(path)).to(device)


def encoder_from(loaded: Loaded, source: str) -> VideoEncoder:
    """The frozen :class:`VideoEncoder` of a read encoder, loaded strictly."""
    if loaded.which == "predictor":
        raise ExportSourceError(f"{source}: holds a predictor, not an encoder")
    encoder = build_encoder_from_arch(loaded.arch)
    load_state_strict(encoder, loaded.state, f"{source} ({loaded.which} encoder)")
    wrapped = VideoEncoder(
        encoder, config_json(loaded), source=source, weights_file=loaded.weights_file
    )
    return wrapped.freeze()


def random_encoder(
    arch: dict[str, Any], seed: int | torch.Generator, *, source: str = "random"
) -> VideoEncoder:
    """A frozen random-init encoder of architecture ``arch`` (ARCH_KEYS): every random floor.

    ``seed``: an int, or a generator to draw from (it advances, for builders that go on
    initialising other parts). The init is the reference init of
    :class:`~vjepa.models.encoder.VisionTransformer`, under that generator only.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    module = vit_from_arch(arch, gen)
    config = {
        "architecture": arch_of(module),
        "normalization": imagenet_normalization(),
        "source": {"kind": "random", "seed": seed if isinstance(seed, int) else None},
    }
    # No weights file: the identity of a random encoder is (architecture, seed).
    return VideoEncoder(module, config, source=source, weights_file=Path("random")).freeze()


def warn_untrained(source: str, which: str) -> None:
    """Say once that ``which`` of ``source`` never trained (a frozen teacher: the init)."""
    warnings.warn(
        f"{source}: the {which} encoder never trained (a frozen teacher, optim.ema [1, 1]): "
        "it is the random init; leave `which` unset for the trained encoder",
        stacklevel=3,
    )
