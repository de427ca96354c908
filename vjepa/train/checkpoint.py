"""Our training checkpoints: atomic save, find the latest complete one, load.

Layout of a run folder::

    <run.dir>/checkpoints/
        step-00001000/
            encoder.safetensors          context encoder state dict
            predictor.safetensors        predictor state dict
            target_encoder.safetensors   EMA target encoder state dict (the one to export)
            train_state.pt               torch.save of plain data: step, optimizer state,
                                         RNG states, data position, counters, config dict
            config.yaml                  the resolved config (for humans and load_encoder)
            COMPLETE                     written last: the folder is valid only with it
        .tmp-step-00002000/              a save in progress (or killed): never "latest"

Atomicity: everything is written into ``.tmp-step-XXXXXXXX/``, each file is fsync'ed, the
``COMPLETE`` marker is written last, the folder is fsync'ed and then renamed (an atomic
operation on POSIX) to ``step-XXXXXXXX/``. A reader therefore sees either no folder or a
complete one; :func:`latest_checkpoint` also requires the marker, so a folder made any other
way is ignored. Older checkpoints beyond ``keep_last`` are deleted only after the new one is
complete.

``train_state.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no pickle code execution from a downloaded checkpoint).
Model weights are safetensors so ``vjepa.load_encoder`` (and anything else) can read the target
encoder without torch.load at all.

We use our own format rather than ``accelerator.save_state`` because the latter pickles
arbitrary objects, is not atomic and writes opaque ``model_0.safetensors`` names.

A training run (vjepa.train.loop, shared by pretraining and world-model training) saves and restores
through :func:`save_training_state` / :func:`restore_training_state`: the model is split into
one safetensors file per top-level child module (``encoder``, ``predictor``,
``target_encoder`` for pretraining; whatever children a world model has), gathered in full on
rank 0 also under FSDP (``torch.distributed.checkpoint.state_dict``), plus the optimizer, the
RNG state and data position of every rank. A child with a ``checkpoint_prefix`` (a wrapper
such as the world model's VideoEncoder, ``"encoder."``) has that prefix dropped from its
file's keys, so the file holds the bare ViT keys as an export does; a file of the older form
(the prefix kept) still restores.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from vjepa.train.diskspace import DiskFullError, checkpoint_space, state_nbytes

WEIGHT_KEYS = ("encoder", "predictor", "target_encoder")
"""Top-level ``state`` entries stored as ``<key>.safetensors`` (state dicts of tensors)."""
TRAIN_STATE = "train_state.pt"
CONFIG_FILE = "config.yaml"
MARKER = "COMPLETE"
BEST_DIR = "best"
"""The folder under run.dir that holds the kept best checkpoint (``train.keep_best``)."""
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


class CheckpointError(FileNotFoundError):
    """A checkpoint path that does not exist or is not a complete checkpoint of ours."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # A directory fsync makes the entries (new files, a rename) durable.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _plain_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no shared storage (safetensors refuses aliasing)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _write_folder(
    folder: Path, step: int, state: dict[str, Any], weight_keys: Collection[str]
) -> None:
    """Write every file of a checkpoint into ``folder`` (fsync'ed), the marker last."""
    folder.mkdir(parents=True)
    rest = {k: v for k, v in state.items() if k not in weight_keys}
    for key in weight_keys:
        if key in state:
            path = folder / f"{key}.safetensors"
            save_file(_plain_tensors(state[key]), str(path), metadata={"step": str(step)})
            _fsync_file(path)
    rest["step"] = step
    with open(folder / TRAIN_STATE, "wb") as f:
        torch.save(rest, f)
        f.flush()
        os.fsync(f.fileno())
    if isinstance(rest.get("config"), dict):
        with open(folder / CONFIG_FILE, "w") as f:
            yaml.safe_dump(rest["config"], f, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
    with open(folder / MARKER, "w") as f:
        f.write(f"{step}\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(folder)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    state: dict[str, Any],
    keep_last: int,
    weight_keys: Collection[str] = WEIGHT_KEYS,
) -> Path:
    """Atomically save ``state`` as ``<run_dir>/checkpoints/step-<step>/``; returns that folder.

    ``state`` maps each of ``weight_keys`` (default ``encoder`` / ``predictor`` /
    ``target_encoder``) to a state dict (written as ``<key>.safetensors``); every other entry (tensors, numbers, strings, lists, dicts) goes into
    ``train_state.pt``, and a ``config`` dict is also written as ``config.yaml``. Call it on
    one process only (the main one).
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left over by a killed save: never valid
        shutil.rmtree(stale)
    tmp = root / f".tmp-{_step_name(step)}"
    final = root / _step_name(step)
    _write_folder(tmp, step, state, weight_keys)
    if final.exists():  # re-saving a step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    _prune(root, keep_last)
    return final


def is_complete(folder: str | Path) -> bool:
    """True when ``folder`` is a step folder with the ``COMPLETE`` marker."""
    folder = Path(folder)
    return bool(_STEP_DIR.match(folder.name)) and (folder / MARKER).is_file()


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None (temp / unmarked folders ignored)."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _prune(root: Path, keep_last: int) -> None:
    complete = list_checkpoints(root.parent)
    for old in complete[: max(len(complete) - keep_last, 0)]:
        shutil.rmtree(old)


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint folder (or a run folder: its latest) back into the ``state`` dict shape.

    Returns every ``<key>.safetensors`` state dict under ``key`` (``encoder`` / ``predictor`` /
    ``target_encoder`` for pretraining) plus every entry of ``train_state.pt`` (``step``,
    ``optimizer``, ``rng``, ``data``, ...).
    """
    path = Path(path)
    if not is_complete(path):
        latest = latest_checkpoint(path) if path.is_dir() else None
        if latest is None:
            raise CheckpointError(f"{path}: not a complete vjepa checkpoint (no {MARKER} marker)")
        path = latest
    state: dict[str, Any] = torch.load(
        path / TRAIN_STATE, map_location=map_location, weights_only=True
    )
    device = str(map_location)
    for file in sorted(path.glob("*.safetensors")):
        state[file.stem] = load_file(str(file), device=device)
    return state


# ----------------------------------------------------------------------------------------
# Training state: model (DDP or FSDP) + optimizer + per-rank RNG and data position
# ----------------------------------------------------------------------------------------


def file_prefixes(model: torch.nn.Module) -> dict[str, str]:
    """The key prefix each top-level child's file drops: its ``checkpoint_prefix``, if any."""
    return {
        name: str(getattr(child, "checkpoint_prefix", "")) for name, child in model.named_children()
    }


def split_weights(
    full: dict[str, torch.Tensor], prefixes: dict[str, str] | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """{"encoder.x": t, ...} -> {"encoder": {"x": t}, ...}: one file per top-level child, each
    key less the child's prefix in ``prefixes`` (see :func:`file_prefixes`)."""
    prefixes = prefixes or {}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in full.items():
        head, dot, rest = name.partition(".")
        if not dot:
            raise RuntimeError(
                f"model entry {name!r} is not inside a child module; checkpoints store one "
                "file per top-level child (put it in a submodule)"
            )
        prefix = prefixes.get(head, "")
        if not rest.startswith(prefix):
            raise RuntimeError(f"model entry {name!r} is not under {head}.{prefix}")
        out.setdefault(head, {})[rest[len(prefix) :]] = tensor
    return out


def join_weights(
    files: dict[str, dict[str, torch.Tensor]], prefixes: dict[str, str]
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`split_weights`: full model keys from one state dict per child.
    A file whose keys all carry the child's prefix already (the older form) is taken as is."""
    full: dict[str, torch.Tensor] = {}
    for head, state in files.items():
        prefix = prefixes.get(head, "")
        if prefix and state and all(k.startswith(prefix) for k in state):
            prefix = ""  # written before the prefix was dropped
        full.update({f"{head}.{prefix}{k}": t for k, t in state.items()})
    return full


def rng_state() -> dict[str, Any]:
    """This process's torch RNG states (CPU, and CUDA when present)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _raw_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # AcceleratedOptimizer wraps the real one


def save_training_state(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    run_dir: str | Path,
    step: int,
    per_rank: dict[str, Any],
    extra: dict[str, Any],
    keep_last: int,
) -> Path | None:
    """Checkpoint a training run; collective: every rank calls it, rank 0 writes, all wait.

    ``model`` is the unwrapped module (DDP unwrapped; FSDP2 modules are their own unwrapped
    form): its full state dict is gathered to rank 0 on the CPU. ``per_rank`` (this rank's
    data position etc.) is gathered with this rank's RNG state into ``state["per_rank"]``;
    ``extra`` (counters, config, ...) is stored as is. Returns the folder on rank 0, else None.
    """
    from accelerate.utils import gather_object
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    from vjepa.train.faults import agree_on_failure

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = split_weights(get_model_state_dict(model, options=full), file_prefixes(model))
    optim = get_optimizer_state_dict(model, _raw_optimizer(optimizer), options=full)
    ranks = gather_object([{**per_rank, "rng": rng_state()}])
    folder, full = None, None
    if accelerator.is_main_process:
        state = {
            **weights,
            **extra,
            "optimizer": optim,
            "per_rank": ranks,
            "world_size": accelerator.num_processes,
        }
        try:  # a full disk: one line naming the folder; the previous checkpoint stays intact
            with checkpoint_space(checkpoint_dir(run_dir), state_nbytes(state)):
                folder = save_checkpoint(
                    run_dir, step, state=state, keep_last=keep_last, weight_keys=tuple(weights)
                )
        except DiskFullError as err:
            full = err
    agree_on_failure(accelerator, full)  # the other ranks raise it too instead of waiting
    accelerator.wait_for_everyone()
    return folder


def restore_training_state(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Load a checkpoint into ``model`` / ``optimizer`` on every rank (strict).

    Returns ``(checkpoint, mine)``: the whole loaded checkpoint and this rank's ``per_rank``
    entry, whose RNG state is restored here. ``mine`` is None when the checkpoint was written
    by another world size (the data position cannot map rank to rank; RNG stays as seeded).
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    ckpt = load_checkpoint(path)
    names = [n for n, _ in model.named_children()]
    missing = [n for n in names if n not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: no weights for {missing} (a checkpoint of another model?)")
    full = join_weights({k: ckpt[k] for k in names}, file_prefixes(model))
    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, full, options=opts)  # strict: every key must match
    set_optimizer_state_dict(model, _raw_optimizer(optimizer), ckpt["optimizer"], options=opts)
    per_rank = ckpt.get("per_rank") or []
    world = accelerator.num_processes
    if ckpt.get("world_size") != world or len(per_rank) != world:
        accelerator.print(
            f"resume: checkpoint written by {ckpt.get('world_size')} processes, now "
            f"{world}: data stream restarts (resampled), RNG reseeded"
        )
        return ckpt, None
    mine = per_rank[accelerator.process_index]
    torch.set_rng_state(mine["rng"]["torch"])
    if "cuda" in mine["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["rng"]["cuda"])
    return ckpt, mine
