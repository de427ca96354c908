"""``vjepa demo world [--env ENV] [--out DIR] [k=v ...]``: the whole world-model chain.

collect (random actions with persistence) -> pretrain the encoder (``vjepa pretrain`` on the
trajectory videos, configs/pretrain/world_tworooms.yaml) -> ``vjepa world train`` end to end
(configs/world/tworooms_e2e.yaml: the encoder starts from the pretrained one and trains with
the predictor, SIGReg on the projected latents) -> ``vjepa plan`` on val tasks
(configs/world/plan_demo.yaml, against the random-action, random-init-model and oracle
baselines) -> the success table on stdout and ``DIR/plan/report.json``.

Sizes follow the env, so any env with the task protocol runs unchanged: the frame side
(pretraining crop and world-model input) is the env's render side capped at ``FRAME_SIDE``
(32) and rounded down to a multiple of the patch size (8 from 32 px up, else 4), the token map
is pooled to 4x4, and the predictor's action input is the env's action dimension x frameskip. ``k=v`` overrides go to every stage
whose config has the key's section (e.g. ``world.frameskip=2``, ``plan.episodes=20``,
``train.max_steps=...`` goes to world train; ``pretrain.``-prefixed keys go to the encoder
pretraining only, e.g. ``pretrain.train.max_steps=100``).

``--no-pretrain`` (``pretrained=False``): the same chain without the encoder pretraining; the
world model's encoder starts from a seeded random init (``world.encoder=random``, seed = the
world training's ``run.seed``) of the architecture the pretraining would have trained (its
``model.*``), everything else unchanged: the floor that says what pretraining buys the world
model (docs/world_model.md, #27).

Re-running resumes: the trajectories are kept (when they were collected with the same env,
episodes, steps and seed; other ones are an error, not silently reused), pretraining and world
training continue from their last checkpoints, planning runs again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from vjepa.config import Config, load_config
from vjepa.demo.pretrain import resource_root
from vjepa.errors import UsageError
from vjepa.models.encoder import model_arch
from vjepa.train.pretrain import pretrain
from vjepa.world.collect import collect
from vjepa.world.envs import action_bounds, make_env, render_frame
from vjepa.world.io import random_encoder_arch
from vjepa.world.planning.mpc import run_plan
from vjepa.world.train import world_train

log = logging.getLogger("vjepa.world")


def _configs() -> Path:
    """configs/ of the checkout, or of the installed copy (see vjepa.demo.pretrain.resource_root)."""
    return resource_root() / "configs"


CONFIGS = _configs()
PRETRAIN_CONFIG = CONFIGS / "pretrain" / "world_tworooms.yaml"
WORLD_CONFIG = CONFIGS / "world" / "tworooms_e2e.yaml"
PLAN_CONFIG = CONFIGS / "world" / "plan_demo.yaml"
DEFAULT_ENV = "vjepa/TwoRooms-v0"
# The end-to-end model's frame side, the one its settings were chosen at: 4x4 tokens of 8 px,
# flattened into one latent. Each doubling of the side costs the encoder about 4x.
FRAME_SIDE = 32


@dataclass(frozen=True)
class DemoSizes:
    """What the demo derives from the env."""

    frame_size: int
    patch_size: int
    pool: int
    action_dim: int


def sizes_for(env_spec: str) -> DemoSizes:
    """Frame side, patch size and pooling that fit the env's renders and actions."""
    env = make_env(env_spec)
    env.reset(seed=0)
    frame = render_frame(env)
    low, _ = action_bounds(env)
    env.close()
    side = min(frame.shape[0], frame.shape[1], FRAME_SIDE)
    patch = 8 if side >= 32 else 4
    size = side - side % patch
    grid = size // patch
    pool = (
        max(d for d in range(1, grid + 1) if grid % d == 0 and grid // d >= 4) if grid >= 4 else 1
    )
    return DemoSizes(size, patch, pool, int(low.shape[0]))


def _split(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(pretrain-only overrides with the ``pretrain.`` prefix removed, the rest)."""
    pre = [o.removeprefix("pretrain.") for o in overrides if o.startswith("pretrain.")]
    rest = [o for o in overrides if not o.startswith("pretrain.")]
    return pre, rest


def _quick(quick: bool, stage: str) -> list[str]:
    if not quick:
        return []
    return {
        "pretrain": ["train.max_steps=20", "train.checkpoint_every=20"],
        "world": ["train.max_steps=30", "train.checkpoint_every=30", "world.val_episodes=2"],
        "plan": ["plan.episodes=2", "plan.max_steps=20", "plan.samples=16", "plan.iterations=1"],
    }[stage]


def _seeded(cfg: Config, seed: int) -> Config:
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed))


def _check_trajectories(traj: Path, **wanted: object) -> None:
    """Trajectories already in ``traj`` must be the ones this run would collect."""
    manifest = traj / "manifest.json"
    if not manifest.is_file():
        return
    have = json.loads(manifest.read_text())
    diff = {k: have.get(k) for k, v in wanted.items() if have.get(k) != v}
    if diff:
        raise UsageError(
            f"{traj} holds trajectories collected with {diff}, this run needs "
            f"{ {k: wanted[k] for k in diff} }: remove it or use another --out"
        )


def stage_configs(
    out: Path,
    s: DemoSizes,
    *,
    env: str,
    overrides: list[str] | tuple[str, ...] = (),
    quick: bool = False,
    train_seed: int | None = None,
    trajectories: Path,
    pretrained: bool = True,
) -> tuple[Config, Config, Config, int]:
    """(pretrain, world train, plan configs, the collection seed) of the chain, all parsed
    before the first heavy step, so that a bad key fails in a second.

    ``pretrained=False``: world.encoder is ``random`` with the pretraining's ``model.name``,
    ``patch_size`` and ``tubelet_size``, so the random init has the pretrained encoder's
    architecture (with RoPE its ``num_frames`` sizes nothing); an explicit ``world.encoder``
    override is then a contradiction and an error.
    """
    pre_over, over = _split(list(overrides))
    world_keys = [o for o in over if not o.startswith("plan.")]
    plan_keys = [o for o in over if o.startswith(("plan.", "run.seed"))]
    if not pretrained and any(o.startswith("world.encoder=") for o in world_keys):
        raise UsageError("--no-pretrain sets world.encoder=random: drop the world.encoder override")
    pre_cfg = load_config(
        PRETRAIN_CONFIG,
        [
            f"run.dir={out / 'encoder'}",
            f"data.shards={trajectories}",
            f"data.crop_size={s.frame_size}",
            f"model.patch_size={s.patch_size}",
            *_quick(quick, "pretrain"),
            *pre_over,
        ],
    )
    m = pre_cfg.model
    if not pretrained:
        arch = model_arch(m, num_frames=m.tubelet_size, img_size=s.frame_size)
        plain = random_encoder_arch(
            m.name, patch_size=m.patch_size, tubelet_size=m.tubelet_size, img_size=s.frame_size
        )
        if arch != plain:
            raise UsageError(
                f"--no-pretrain: world.encoder=random builds a plain RoPE encoder ({plain}); "
                f"the pretraining's model.* asks for {arch}"
            )
    encoder = (
        [f"world.encoder={out / 'encoder'}"]
        if pretrained
        else [
            "world.encoder=random",
            f"model.name={m.name}",
            f"model.patch_size={m.patch_size}",
            f"model.tubelet_size={m.tubelet_size}",
        ]
    )
    world_cfg = load_config(
        WORLD_CONFIG,
        [
            f"run.dir={out / 'world'}",
            f"data.shards={trajectories}",
            *encoder,
            f"world.frame_size={s.frame_size}",
            f"world.pool={s.pool}",
            *_quick(quick, "world"),
            *world_keys,
        ],
    )
    collect_seed = world_cfg.run.seed
    if train_seed is not None:
        pre_cfg, world_cfg = _seeded(pre_cfg, train_seed), _seeded(world_cfg, train_seed)
    plan_cfg = load_config(
        PLAN_CONFIG,
        [
            f"run.dir={out / 'plan'}",
            f"plan.env={env}",
            f"plan.model={out / 'world'}",
            *_quick(quick, "plan"),
            *plan_keys,
        ],
    )
    r = world_cfg.world.frameskip
    if plan_cfg.plan.horizon % r:
        raise ValueError(
            f"plan.horizon ({plan_cfg.plan.horizon}) must be a multiple of world.frameskip ({r})"
        )
    return pre_cfg, world_cfg, plan_cfg, collect_seed


def run_world_demo(
    out: Path,
    *,
    env: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    quick: bool = False,
    episodes: int = 0,
    steps: int = 0,
    train_seed: int | None = None,
    trajectories: Path | None = None,
    pretrained: bool = True,
) -> dict:
    """Run the chain into ``out``; returns plan's report dict (also ``out/plan/report.json``).

    ``train_seed`` (``vjepa demo world --seeds``): ``run.seed`` of the encoder pretraining and
    of the world-model training (their init, masks and data order) only; collection and
    planning (the val tasks, the planners' draws) keep the demo's seed. ``trajectories``: where
    the collected trajectories are (default ``out/trajectories``), so that runs can share them.
    ``pretrained=False`` (``--no-pretrain``): no encoder pretraining; world training starts
    from a random-init encoder seeded with its ``run.seed`` (:func:`stage_configs`).
    """
    env = env or DEFAULT_ENV
    s = sizes_for(env)
    t0 = time.perf_counter()
    traj = Path(trajectories) if trajectories is not None else out / "trajectories"
    n_episodes = episodes or (20 if quick else 300)
    n_steps = steps or (20 if quick else 60)
    pre_cfg, world_cfg, plan_cfg, collect_seed = stage_configs(
        out, s, env=env, overrides=overrides, quick=quick, train_seed=train_seed,
        trajectories=traj, pretrained=pretrained,
    )  # fmt: skip
    _check_trajectories(traj, env=env, episodes=n_episodes, steps=n_steps, seed=collect_seed)
    print(f"[demo world] env {env}: {s}")
    if not (traj / "manifest.json").is_file():
        collect(env, traj, episodes=n_episodes, steps=n_steps, seed=collect_seed)
    print(
        f"[demo world] collected {n_episodes} x {n_steps} frames ({time.perf_counter() - t0:.0f} s)"
    )
    if pretrained:
        pretrain(pre_cfg)
        print(f"[demo world] encoder pretrained ({time.perf_counter() - t0:.0f} s)")
    else:
        print(f"[demo world] no pretraining: random-init encoder, seed {world_cfg.run.seed}")
    world_train(world_cfg)
    print(f"[demo world] world model trained ({time.perf_counter() - t0:.0f} s)")
    report = run_plan(plan_cfg)  # prints the success table against the baselines
    print(
        f"[demo world] done in {time.perf_counter() - t0:.0f} s; report: {out / 'plan' / 'report.json'}"
    )
    return report
