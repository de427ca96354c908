"""Reproducible runs: ``run.deterministic`` and the facts that decide a run's numbers.

A run is bit-reproducible on one machine for a fixed seed, ``data.num_workers`` (the loader
interleaves the workers' batches, so another count is another data order), thread count
(``train.threads``: float sums are reduced in another order) and video decoder (torchcodec and
PyAV decode slightly different pixels). :func:`run_facts` records those in the metrics.jsonl
header so two runs can be compared; :func:`set_deterministic` asks torch for deterministic
kernels (an op without one raises instead of running non-deterministically).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from vjepa.config import Config, ConfigError
from vjepa.data.backends import backend_chain

__all__ = ["run_facts", "set_deterministic"]


def set_deterministic(enabled: bool) -> None:
    """``torch.use_deterministic_algorithms(enabled)`` and what CUDA needs for it.

    cuBLAS picks its reduction split per call unless ``CUBLAS_WORKSPACE_CONFIG`` fixes the
    workspace (set before the first cuBLAS call; a value the user set is kept); cuDNN must not
    benchmark algorithms (it would pick by timing).
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False if enabled else torch.backends.cudnn.benchmark


def run_facts(cfg: Config) -> dict[str, Any]:
    """What decides a run's numbers besides its config: decoder, threads, workers, versions."""
    try:
        chain = backend_chain(cfg.data.decoder, announce=False)
    except ConfigError:  # no video decoder here (e.g. a world model on cached latents)
        chain = ()
    return {
        "decoder": chain[0] if chain else None,  # data.decoder=auto resolved: the first one
        "decoder_chain": list(chain),
        "threads": torch.get_num_threads(),
        "num_workers": cfg.data.num_workers,
        "deterministic": cfg.run.deterministic,
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
