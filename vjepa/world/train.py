"""``vjepa world train CONFIG [k=v ...]``: the action-conditioned predictor on the shared loop.

World-model training is a :class:`vjepa.train.loop.Task`, so it has pretraining's Accelerate loop,
atomic checkpoints, exact resume, metrics.jsonl, trackers, progress bar and loss.png. What is
its own:

- the model: a frozen encoder (``world.encoder``: anything vjepa.load_encoder accepts, e.g. a
  ``vjepa pretrain`` run on the trajectory videos, or ``random``) and a fresh
  :class:`~vjepa.world.predictor.ACPredictor` sized from the data (action dim x frameskip,
  state dim) and ``world.pred_*``; only the predictor trains;
- the data: ``data.shards`` trajectory shards, decoded once (vjepa.world.trajectories) and encoded
  once by the frozen encoder (every frame on its own); batches are windows of
  ``world.window`` frames drawn by a seeded sampler, a pure function of (seed, rank, batch),
  so a resumed run sees exactly the batches an uninterrupted one would;
- the loss: teacher forcing + ``world.rollout_weight`` x the k-step rollout term, L1 against
  the layer-normed latents (vjepa.world.losses.world_losses); batches carry ``latents``;
- end-to-end (``world.encoder_trainable``, LeWM / PLDM style): the encoder trains too (a
  VideoEncoder that is not frozen: its weights join the optimizer); the
  batches carry ``frames``, windows of uint8 frames encoded in the step, the targets are the
  same encoder's latents (no stop-gradient) and ``world.sigreg_weight`` adds SIGReg on them;
- ``world.tempo``: a temporal-distance head fitted after training on the final model's latents
  (vjepa.world.tempo), saved as ``tempo.safetensors`` for that checkpoint, its held-out quality
  (Spearman of predicted vs true steps) in val.json;
- ``world.idm_weight`` / ``world.time_var`` / ``world.centre``: the terms of
  vjepa.world.scene_terms for scenes that change per episode; val.json's ``val_probe_r2_*``:
  how well a linear probe on the latent finds the agent (and the env's other
  ``probe_targets``, vjepa.world.scene_probe), also printed;
- ``world.json`` in the run folder: the spec, encoder and predictor architectures, so
  ``vjepa.load_world_model(run_dir)`` rebuilds the model from a checkpoint.
- several processes (``accelerate launch -m vjepa world train``): DDP like pretraining, each
  rank drawing its own windows; SIGReg takes its statistics over every rank's frames
  (``world.reg_scope: global``, the one gather of vjepa.jepa.gather); the main process alone
  writes world.json, the hazard head and val.json. A BatchNorm of ``world.latent_dim`` keeps
  per-rank statistics (it is not converted to SyncBatchNorm).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from torch import nn

from vjepa.artifacts.encoder import load_encoder
from vjepa.artifacts.sources import read_world
from vjepa.config import Config
from vjepa.data.shards import expand_urls
from vjepa.train.faults import hold_run_folder
from vjepa.train.loop import run_training
from vjepa.train.task import StepOutput, Task
from vjepa.world.hazard import fit_hazard, hazard_metrics, save_hazard
from vjepa.world.io import WORLD_FILE, load_world_model, random_encoder, world_description
from vjepa.world.latent import fit_codebook, prediction_checks, step_flags
from vjepa.world.model import WorldModel, WorldSpec, build_world_model
from vjepa.world.scene_probe import position_probe, probe_targets
from vjepa.world.tempo import TEMPO_FILE, fit_tempo, save_tempo, tempo_metrics
from vjepa.world.trajectories import (
    Trajectory,
    WindowSampler,
    action_bounds,
    gather_windows,
    read_trajectories,
)

try:  # the env says where its transitions branch (stochastic_states); gymnasium is optional
    from vjepa.world.envs import make_env
except ImportError:  # pragma: no cover - without the world extra: no branch split
    make_env = None

log = logging.getLogger("vjepa.world")
PROBE_TRAJ = 256
"""Training trajectories (the first ones) the position probe of val.json is fitted on: many, as
each brings its own scene (64 scenes were too few for a probe on 32 px pixels to find the agent
in unseen ones: R² -11 vs 0.97 with 256, docs/world_model.md)."""
PROBE_ROWS = 3072
"""At most about this many of their frames (every k-th of each trajectory), to bound the ridge."""


def build_encoder(cfg: Config) -> nn.Module:
    """The encoder of ``world.encoder`` (a path, or ``random``: seeded from run.seed); frozen
    here, :func:`prepare` makes it trainable with ``world.encoder_trainable``."""
    if cfg.world.encoder == "random":
        return random_encoder(
            cfg.model.name,
            patch_size=cfg.model.patch_size,
            tubelet_size=cfg.model.tubelet_size,
            img_size=cfg.world.frame_size,
            seed=cfg.run.seed,
        )
    return load_encoder(cfg.world.encoder)


@dataclass
class _Prepared:
    """What both the model builder and the batch stream need, made once per process."""

    trajs: list[Trajectory]
    val: list[Trajectory]
    encoder: nn.Module
    spec: WorldSpec
    val_states: list[np.ndarray | None] | None = None  # held-out states [T, S] (for checks)
    probe_states: list[np.ndarray | None] | None = None  # states of the first PROBE_TRAJ
    # training trajectories (the position probe's fit)
    series: list[torch.Tensor] | None = None  # per trajectory, made on first use: latents
    # [T, N, D] (frozen encoder) or uint8 frames [T, H, W, 3] (end to end)


def prepare(cfg: Config) -> _Prepared:
    """Read the trajectories, load the encoder, fix the spec (action bounds from the data)."""
    w = cfg.world
    trajs = read_trajectories(
        cfg.data.shards,
        decoder=cfg.data.decoder,
        need_states=w.use_state,
        keep_states=w.val_episodes > 0,  # the held-out states say where the env branches
        limit=w.max_trajectories,
        retry=cfg.data.retry,
    )
    if w.val_episodes >= len(trajs):
        raise ValueError(
            f"world.val_episodes={w.val_episodes} leaves no training trajectory of {len(trajs)}"
        )
    val_states = [t.states for t in trajs[len(trajs) - w.val_episodes :]] if w.val_episodes else []
    probe_states = [t.states for t in trajs[: len(trajs) - w.val_episodes][:PROBE_TRAJ]]
    if not w.use_state:  # kept for the held-out states only: the model never sees them
        trajs = [replace(t, states=None) for t in trajs]
    val = trajs[len(trajs) - w.val_episodes :] if w.val_episodes else []
    train = trajs[: len(trajs) - w.val_episodes]
    encoder = build_encoder(cfg)
    if w.encoder_trainable:
        # End-to-end: the encoder's weights join the optimizer (VideoEncoder stays in eval
        # mode: no dropout / drop-path, only its parameters move).
        encoder.requires_grad_(True)
    low, high = action_bounds(train)
    spec = WorldSpec(
        frame_size=encoder.img_size,
        pool=w.pool,
        window=w.window,
        frameskip=w.frameskip,
        energy_blur=w.energy_blur,
        latent_dim=w.latent_dim,
        pred_norm=w.pred_norm,
        centre=w.centre,
        action_low=low,
        action_high=high,
        state_dim=int(train[0].states.shape[1]) if w.use_state else 0,
        env=str(train[0].meta.get("env", "")),
        encoder_source=w.encoder,
        extra={"trajectories": len(train), "shards": cfg.data.shards},
    )
    return _Prepared(train, val, encoder, spec, val_states, probe_states)


def _model(cfg: Config, prep: _Prepared) -> WorldModel:
    gen = torch.Generator().manual_seed(cfg.run.seed)
    return build_world_model(
        prep.encoder,
        prep.spec,
        width=cfg.world.pred_width,
        depth=cfg.world.pred_depth,
        heads=cfg.world.pred_heads,
        codes=cfg.world.latent_codes if cfg.world.latent == "discrete" else 0,
        z_dim=cfg.world.latent_dim_z if cfg.world.latent == "continuous" else 0,
        generator=gen,
        idm=cfg.world.idm_weight > 0,
    )


def encode_trajectories(model: WorldModel, trajs: list[Trajectory]) -> list[torch.Tensor]:
    """Latents [T, N, D] of every trajectory (the frozen encoder, every frame on its own)."""
    return [model.encode(torch.from_numpy(t.frames)[None])[0] for t in trajs]


def _batches(
    cfg: Config, prep: _Prepared, rank: int, start: dict | None
) -> Iterator[dict[str, torch.Tensor | None]]:
    w = cfg.world
    key = "frames" if w.encoder_trainable else "latents"
    if prep.series is None and w.encoder_trainable:
        # End-to-end: windows of uint8 frames, encoded in the step (the encoder trains).
        prep.series = [torch.from_numpy(t.frames) for t in prep.trajs]  # [T, H, W, 3]
    if prep.series is None:
        # A throwaway model around the shared frozen encoder: encode() needs only it.
        prep.series = encode_trajectories(_model(cfg, prep), prep.trajs)  # [T, N, D] each
    span = (w.window - 1) * w.frameskip + 1
    sampler = WindowSampler([len(t.frames) for t in prep.trajs], span, seed=cfg.run.seed, rank=rank)
    batch = int((start or {}).get("batches", 0))
    while True:
        traj, first = sampler.sample(batch, cfg.data.batch_size)
        win = gather_windows(
            prep.series, prep.trajs, traj, first, window=w.window, frameskip=w.frameskip, key=key
        )
        win["index"] = batch  # seeds SIGReg's directions: resume draws the same ones
        yield win
        batch += 1


def _forward(cfg: Config, model: nn.Module, batch: dict, device: torch.device) -> StepOutput:
    states = batch["states"].to(device) if batch.get("states") is not None else None
    frames = batch.get("frames")
    latents = batch.get("latents")
    loss, terms = model(
        batch["actions"].to(device),  # [B, W-1, r*A]
        states,
        latents=latents.to(device) if latents is not None else None,  # [B, W, N, D]
        frames=frames.to(device) if frames is not None else None,  # [B, W, H, W, 3] uint8
        rollout_steps=cfg.world.rollout_steps,
        rollout_weight=cfg.world.rollout_weight,
        exp=cfg.world.loss_exp,
        sigreg_weight=cfg.world.sigreg_weight,
        reg_scope=cfg.world.reg_scope,
        sigreg_generator=torch.Generator().manual_seed(
            cfg.run.seed * 1_000_003 + int(batch.get("index", 0))
        ),
        latent_relax=cfg.world.latent_relax,
        router_weight=cfg.world.router_weight,
        kl_weight=cfg.world.kl_weight,
        idm_weight=cfg.world.idm_weight,
        time_var=cfg.world.time_var,
    )
    return StepOutput(loss=loss, terms=terms)


def world_task(cfg: Config, prep: _Prepared | None = None) -> Task:
    """World-model training as a :class:`vjepa.train.loop.Task` (data read once, here)."""
    prep = prep if prep is not None else prepare(cfg)
    return Task(
        name="world",
        build_model=lambda c: _model(c, prep),
        batches=lambda c, rank, world, start: _batches(c, prep, rank, start),
        forward=_forward,
        rows=lambda batch: int(batch["actions"].shape[0]),
    )


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


@torch.no_grad()
def validation_loss(cfg: Config, model: WorldModel, prep: _Prepared, batches: int = 8) -> dict:
    """Mean losses on windows of the held-out trajectories (seeded, the same every time)."""
    w = cfg.world
    latents = encode_trajectories(model, prep.val)
    span = (w.window - 1) * w.frameskip + 1
    sampler = WindowSampler([len(t.frames) for t in prep.val], span, seed=cfg.run.seed + 1)
    sums: dict[str, float] = {}
    for b in range(batches):
        traj, first = sampler.sample(b, cfg.data.batch_size)
        win = gather_windows(latents, prep.val, traj, first, window=w.window, frameskip=w.frameskip)
        _, terms = model(
            win["actions"],
            win["states"],
            latents=win["latents"],
            rollout_steps=w.rollout_steps,
            rollout_weight=w.rollout_weight,
            kl_weight=w.kl_weight,
            sigreg_generator=torch.Generator().manual_seed(cfg.run.seed + b),  # z's noise
        )
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) / batches
    return {f"val_{k}": v for k, v in sums.items()}


def train_hazard(cfg: Config, model: WorldModel, prep: _Prepared, run_dir: Path) -> dict:
    """Fit the hazard head when the training trajectories carry violation flags (and
    ``world.hazard_steps`` > 0); saves ``hazard.pt``; returns its held-out precision / recall."""
    w = cfg.world
    if not w.hazard_steps or not any(t.violations is not None for t in prep.trajs):
        return {}
    if not any(t.violations is not None and t.violations.any() for t in prep.trajs):
        log.info("no hazard head: the training trajectories never report a violation")
        return {"hazard_positives": 0}
    with torch.no_grad():
        latents = encode_trajectories(model, prep.trajs)  # [T, N, D] each
    head = fit_hazard(
        latents,
        [t.violations for t in prep.trajs],
        steps=w.hazard_steps,
        lr=w.hazard_lr,
        seed=cfg.run.seed,
    )
    save_hazard(head, run_dir)
    if not any(t.violations is not None for t in prep.val):
        return {}
    with torch.no_grad():
        val_latents = encode_trajectories(model, prep.val)
    return hazard_metrics(head, val_latents, [t.violations for t in prep.val], 0.5)


def train_tempo(cfg: Config, prep: _Prepared, run_dir: Path) -> dict:
    """``world.tempo``: fit the temporal-distance head on the latest checkpoint's latents of the
    training trajectories, save it as ``tempo.safetensors`` (for that checkpoint); returns its
    held-out metrics (vjepa.world.tempo.tempo_metrics; empty without held-out trajectories)."""
    w = cfg.world
    if not w.tempo:
        return {}
    _, ckpt = read_world(run_dir)
    model = load_world_model(ckpt)
    with torch.no_grad():
        latents = encode_trajectories(model, prep.trajs)  # [T, N, D] each
    head = fit_tempo(
        latents,
        cap=w.tempo_cap,
        steps=w.tempo_steps,
        lr=w.tempo_lr,
        seed=cfg.run.seed,
        hidden=w.tempo_hidden,
        far=w.tempo_far,
    )
    tmp = run_dir / f".{TEMPO_FILE}.{os.getpid()}.tmp"
    save_tempo(head, tmp, step=int(ckpt.name.removeprefix("step-")))
    os.replace(tmp, run_dir / TEMPO_FILE)
    if not prep.val:
        return {}
    with torch.no_grad():
        return tempo_metrics(head, encode_trajectories(model, prep.val))


def _trajectory_env(trajs: list[Trajectory], states: list[np.ndarray | None] | None, what: str):
    """The env the trajectories came from (their meta's spec), or None when a trajectory has
    no states or the env cannot be made here (a DROID set, an env file that is not here)."""
    spec = str(trajs[0].meta.get("env", "")) if trajs else ""
    if make_env is None or not spec or not states or any(s is None for s in states):
        return None
    try:
        return make_env(spec)
    except Exception as err:
        log.info("no %s in val.json: env %r not available (%s)", what, spec, err)
        return None


def _stochastic_flags(
    trajs: list[Trajectory], states: list[np.ndarray | None] | None
) -> list[np.ndarray] | None:
    """Per trajectory, bool [T]: the frames from which the env's next step may branch (its
    optional ``stochastic_states(states [N, S]) -> [N] bool``); None when the env of the
    trajectories cannot be made here, has no such method, or a trajectory has no states."""
    env = _trajectory_env(trajs, states, "branch split")
    if env is None:
        return None
    fn = getattr(env.unwrapped, "stochastic_states", None)
    return None if fn is None else [np.asarray(fn(s), dtype=bool) for s in states]


@torch.no_grad()
def latent_checks(cfg: Config, model: WorldModel, prep: _Prepared, chunk: int = 256) -> dict:
    """vjepa.world.latent.prediction_checks on every window of the held-out trajectories
    (seeded order), with the codebook control fitted to frames of the training trajectories."""
    w = cfg.world
    span = (w.window - 1) * w.frameskip + 1
    val = encode_trajectories(model, prep.val)
    pairs = [(i, f) for i, t in enumerate(prep.val) for f in range(len(t.frames) - span + 1)]
    if not pairs:
        return {}
    order = np.random.default_rng(cfg.run.seed).permutation(len(pairs))
    pairs = [pairs[j] for j in order]
    flags = _stochastic_flags(prep.val, prep.val_states)
    windows, branch = [], [] if flags is not None else None
    for lo in range(0, len(pairs), chunk):
        idx, first = (np.array(v) for v in zip(*pairs[lo : lo + chunk]))
        windows.append(
            gather_windows(val, prep.val, idx, first, window=w.window, frameskip=w.frameskip)
        )
        if branch is not None:
            steps = [step_flags(flags[i], f, w.window, w.frameskip) for i, f in zip(idx, first)]
            branch.append(torch.from_numpy(np.stack(steps)))
    train = torch.cat(encode_trajectories(model, prep.trajs[:64]))  # [M, N, D]
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.run.seed))
    k = w.latent_samples if model.z_dim else max(model.codes, 1)
    codebook = fit_codebook(train[pick[:4096]], k, seed=cfg.run.seed)
    report = prediction_checks(
        model, windows, branch, codebook, seed=cfg.run.seed, samples=w.latent_samples
    )
    return {f"val_{k}": v for k, v in report.items()}


@torch.no_grad()
def probe_report(model: WorldModel, prep: _Prepared) -> dict:
    """``val_probe_r2_<name>``: the latent -> position ridge probe (vjepa.world.scene_probe),
    fitted on the first PROBE_TRAJ training trajectories, R² on the held-out ones; {} when the
    trajectories carry no states or their env cannot be made here."""
    states = (prep.probe_states or []) + (prep.val_states or [])
    env = _trajectory_env(prep.trajs, states, "position probe")
    if env is None or not prep.val:
        return {}
    targets = [probe_targets(env, s) for s in states]
    n = len(prep.probe_states)
    k = max(1, -(-sum(len(t.frames) for t in prep.trajs[:n]) // PROBE_ROWS))  # frame stride
    train_z = [model.encode(torch.from_numpy(t.frames[::k])[None])[0] for t in prep.trajs[:n]]
    fit = [{name: v[::k] for name, v in t.items()} for t in targets[:n]]
    report = position_probe(train_z, fit, encode_trajectories(model, prep.val), targets[n:])
    return {f"val_{k}": v for k, v in report.items()}


def world_train(cfg: Config) -> Path:
    """Run (or resume) world-model training into ``cfg.run.dir``; returns the run folder."""
    expand_urls(cfg.data.shards)  # a wrong shard path fails here, before the run folder exists
    with hold_run_folder(cfg.run.dir):  # world.json, the loop (nested), hazard head, val.json
        return _world_train(cfg)


def _world_train(cfg: Config) -> Path:
    prep = prepare(cfg)
    run_dir = Path(cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    main = PartialState().is_main_process  # `accelerate launch`: one writer of the run folder
    if main:
        _write_json_atomic(run_dir / WORLD_FILE, world_description(_model(cfg, prep)))
    run_training(cfg, world_task(cfg, prep))  # every rank (DDP; SIGReg over world.reg_scope)
    if not main:
        return run_dir  # the hazard head and the validation: once, on the main process
    hazard = train_hazard(cfg, load_world_model(run_dir), prep, run_dir)
    tempo = train_tempo(cfg, prep, run_dir)
    if prep.val:
        model = load_world_model(run_dir)
        report = validation_loss(cfg, model, prep) | hazard | tempo
        report |= latent_checks(cfg, model, prep)
        probe = probe_report(model, prep)
        if probe:
            print(
                "[world] position probe R² (val): "
                + ", ".join(f"{k.removeprefix('val_probe_r2_')} {v:.3f}" for k, v in probe.items())
            )
        report |= probe
        _write_json_atomic(run_dir / "val.json", report)
        log.info("validation: %s", report)
    return run_dir
