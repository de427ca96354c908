"""The sections of the world-model commands: ``world`` (`vjepa world train`) and ``plan``
(`vjepa plan`, `vjepa demo world`). Same rules as :mod:`vjepa.config.sections`: every default
lives here, with a docstring and a range check per field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vjepa.config.sections import (
    ConfigError,
    Section,
    _at_least,
    _non_negative,
    _positive,
    _ranged,
    check_predictor,
)


@dataclass
class WorldConfig(Section):
    """Action-conditioned world model (``vjepa world train``): frozen encoder + AC predictor.

    The training trajectories come from ``data.shards`` (trajectory shards of ``vjepa collect``)
    in windows of ``data.batch_size``; the other ``data.*`` keys do not apply.
    """

    encoder: str = "random"
    """Frozen encoder: anything vjepa.load_encoder accepts (a pretrain run, export folder, official file), or 'random' (a seeded random init of size model.name / model.patch_size / model.tubelet_size)."""
    frame_size: int = _positive(64)
    """Frames are resized to this side before encoding (the encoder's img_size for a loaded one)."""
    pool: int = _positive(1)
    """Average-pool the encoder's token map by this factor per side (e.g. 8x8 tokens, pool 2 -> 4x4); the frame's side in tokens must divide."""
    window: int = _at_least(4, 2)
    """Frames per training window (the predictor's context length; actions: window - 1)."""
    frameskip: int = _positive(1)
    """Env steps per model step: windows take every frameskip-th frame and the model's action is the frameskip env actions in between, concatenated (DINO-WM uses 5)."""
    rollout_steps: int = _non_negative(2)
    """k: autoregressive steps of the rollout loss term (1 <= k <= window - 1; 0: teacher forcing only)."""
    rollout_weight: float = _non_negative(1.0)
    """Weight of the rollout term; the teacher-forcing term has weight 1."""
    loss_exp: float = _positive(1.0)
    """Exponent of the prediction loss (1 = L1), for the teacher-forcing and rollout terms."""
    pred_width: int = _positive(128)
    """Predictor width."""
    pred_depth: int = _positive(3)
    """Predictor transformer blocks."""
    pred_heads: int = _positive(4)
    """Predictor attention heads."""
    energy_blur: float = _non_negative(0.0)
    """Planning energy: Gaussian blur sigma (in tokens of the pooled map) on both latent maps before the L1 (0: raw token L1, flat beyond a patch; 1: grows with the agent's distance)."""
    use_state: bool = False
    """Add a state token per step (needs <key>.states.npy; rollouts then need the states too)."""
    val_episodes: int = _non_negative(0)
    """Trajectories held out of training (the last ones read) for the validation loss."""
    max_trajectories: int = _non_negative(0)
    """Read at most this many trajectories (0: all)."""
    encoder_trainable: bool = False
    """End-to-end (LeWM / PLDM style): train the encoder (world.encoder, a loaded one or random) jointly with the predictor on the prediction loss; batches carry frames, the targets are the same encoder's latents (no stop-gradient); use with world.sigreg_weight > 0 against collapse."""
    latent_dim: int = _non_negative(0)
    """End-to-end models: one latent vector per frame, a linear projection of the flattened (pooled) token map to this many dims + BatchNorm (LeWM's projector), instead of the layer-normed tokens: SIGReg can centre and spread it, and unlike a mean over tokens it can say where the agent is (0: off)."""
    sigreg_weight: float = _non_negative(0.0)
    """Weight of SIGReg (LeJEPA / LeWM: the latents of the batch's frames pushed toward N(0, I) by random 1-D Epps-Pulley tests) in the world loss; 0: off."""
    reg_scope: Literal["global", "local"] = "global"
    """Frames SIGReg takes its statistics over under `accelerate launch`: global = the windows of every rank (gathered with gradients, vjepa.jepa.gather; the same loss and gradients as one process on the concatenated batch), local = this rank's only. A BatchNorm of world.latent_dim keeps per-rank statistics either way."""
    idm_weight: float = _non_negative(0.0)
    """Weight of an inverse-dynamics term (EB-JEPA / PLDM's IDM, issue #25): a small MLP predicts the action a_t (scaled to [-1, 1]) from the latents of frames t and t+1, MSE; it acts on the same latents as SIGReg, so its gradient reaches the trainable encoder and world.latent_dim's projection (a frozen encoder: only the head learns); 0: off (no head)."""
    time_var: float = _non_negative(0.0)
    """Weight of the within-episode variance hinge (PLDM's std_loss_t, the function of pretraining's objective.time_var): mean relu(1 - std over the window's frames) of each latent feature, so features that stay constant within an episode (the scene) cost; on the latents SIGReg sees; 0: off."""
    centre: bool = False
    """Centre the latents per window (minus each window's temporal mean) before the prediction and its loss, so a scene constant within an episode contributes nothing; planning then centres the current frame's and the goal's latents by their mean (stored in the world model's spec)."""
    hazard_steps: int = _non_negative(300)
    """Full-batch steps of the hazard head fitted after training on the latents of the frames whose trajectories carry violation flags (<key>.violations.npy), positives weighted neg/pos; writes hazard.pt (0: no head)."""
    hazard_lr: float = _positive(3e-3)
    """Adam learning rate of the hazard head."""
    pred_norm: Literal["layer", "none"] = "layer"
    """Normalisation of the predictor's output: layer (a layer norm, like the layer-normed targets of a frozen encoder) or none. With world.latent_dim the targets are BatchNorm outputs, which a layer norm cannot match: an error floor larger than the change between two frames on IceRoom (docs/world_latent.md); none removes it."""
    latent: Literal["none", "discrete", "continuous"] = "none"
    """A latent variable z for a world that is not deterministic: none (one prediction per step), discrete (world.latent_codes codes, one prediction per code; trained winner-take-all with a router that learns the winning code) or continuous (a world.latent_dim_z-dim z per step from a posterior on the current and next latent, KL to N(0, I) weighted by world.kl_weight; planning draws it from the prior). With either, planning scores several futures per action sequence, see plan.futures and plan.risk."""
    latent_codes: int = _at_least(4, 2)
    """world.latent=discrete: K, the number of codes (z holds at most log2 K bits per model step)."""
    latent_relax: float = _ranged(0.05, lambda v: 0 <= v < 1, "must be within [0, 1)")
    """world.latent=discrete: weight of the mean error over all codes beside the winner's (relaxed winner-take-all: a code that never wins still moves toward the data)."""
    router_weight: float = _non_negative(1.0)
    """world.latent=discrete: weight of the router's cross-entropy (it learns which code wins; its input is detached, so it never shapes the prediction)."""
    latent_dim_z: int = _positive(4)
    """world.latent=continuous: the size of z per model step (a small vector: the KL, not the size, bounds what it carries)."""
    kl_weight: float = _non_negative(0.02)
    """world.latent=continuous: weight of KL(q(z | z_t, z_t+1) || N(0, I)) in nats per model step, a plain weight (no free bits): the information bottleneck; each nat z carries must lower the prediction loss by this much (huge: z carries nothing, the model is the deterministic one)."""
    latent_samples: int = _at_least(8, 2)
    """world.latent=continuous: prior draws of z per step in val.json's best-of-K checks (and K of its input-agnostic codebook control)."""
    tempo: bool = False
    """Fit a temporal-distance head (TEMPO-style, vjepa/world/tempo.py) after training: an MLP on two of the final model's latents that regresses log1p of the env steps between them (pairs of one training trajectory, and a world.tempo_far share of pairs of two trajectories as 'far'); writes tempo.safetensors, its held-out Spearman in val.json; used by plan.goal_cost."""
    tempo_cap: int = _positive(64)
    """world.tempo: the largest step count the head tells apart (pairs up to this many env steps apart; cross-trajectory pairs count as this many)."""
    tempo_steps: int = _positive(2000)
    """world.tempo: Adam steps of the head (each on a fresh batch of 512 pairs)."""
    tempo_lr: float = _positive(3e-3)
    """world.tempo: peak learning rate of the head (cosine decay to 5 % of it)."""
    tempo_hidden: int = _positive(128)
    """world.tempo: width of the head's two hidden layers."""
    tempo_far: float = _ranged(0.2, lambda v: 0 <= v < 1, "must be within [0, 1)")
    """world.tempo: share of each batch that pairs frames of two different trajectories, labelled world.tempo_cap steps apart."""

    def check(self) -> None:
        if self.rollout_steps > self.window - 1:
            raise ConfigError(
                f"world.rollout_steps ({self.rollout_steps}) must be <= world.window - 1 "
                f"({self.window - 1})"
            )
        check_predictor(self.pred_width, self.pred_heads, "world.")


@dataclass
class PlanConfig(Section):
    """`vjepa plan`: model-predictive control on held-out tasks of an env, with baselines."""

    env: str = "vjepa/TwoRooms-v0"
    """The env: a gymnasium id, path/file.py:Class or package.module:Class (with the task protocol)."""
    model: str = "oracle"
    """World model to plan with (anything vjepa.load_world_model accepts), or oracle (the true simulator)."""
    planner: Literal["cem", "mppi"] = "cem"
    """Trajectory optimiser."""
    horizon: int = _positive(20)
    """Planned actions per replan."""
    samples: int = _at_least(256, 2)
    """Action sequences scored per planner iteration (one batched rollout)."""
    iterations: int = _positive(6)
    """Planner iterations per replan."""
    elites: int = _positive(32)
    """CEM: sequences the Gaussian is refit to; MPPI: lowest energies that get a weight."""
    temperature: float = _positive(0.1)
    """MPPI: softmax temperature of the energy weights (energies are normalised to [0, 1] first)."""
    init_std: float = _positive(1.0)
    """Initial sampling std as a fraction of the action range's half-width."""
    execute: int = _positive(1)
    """Actions executed before replanning (receding horizon)."""
    energy: Literal["final", "sum", "min"] = "min"
    """Energy of a sequence: distance to the goal at the horizon, summed over every step, or the smallest along it."""
    episodes: int = _positive(50)
    """Held-out tasks evaluated (each method runs on the same tasks)."""
    max_steps: int | None = _positive(None)
    """Env steps per episode; None: the env's max_episode_steps (its attribute, else its gymnasium registration), else plan.fallback_steps."""
    task_seed: int = 1000000
    """Seed of the first task (keep it apart from collect seeds); see plan.tasks for the seed of task i."""
    tasks: Literal["dev", "val"] = "val"
    """Task split: dev (task i is sample_task(task_seed + i); choose settings here) or val (sample_task(task_seed + 500000 + i); report here, never choose on it). Disjoint while plan.episodes <= 500000."""
    stop_at_goal: bool = True
    """End an episode once goal_distance <= success_distance (the env's success signal)."""
    baselines: list[str] = field(default_factory=lambda: ["random", "random_model", "oracle"])
    """Baselines on the same tasks: random (uniform actions), random_model (same planner, random-init world model), oracle."""
    device: str = "cpu"
    """Torch device of the planner and the world model."""
    plots: bool = True
    """Write trajectories.png, energy_landscape.png and episode.gif into run.dir."""
    fallback_steps: int = _positive(100)
    """Episode budget when plan.max_steps is None and the env declares no max_episode_steps."""
    goal_offset: int | None = _positive(None)
    """Steps between start and goal for envs whose sample_task has a goal_offset attribute (vjepa/PushT-v0, vjepa/DMCReacher-v0: 25 / 50 / 75; vjepa/TwoRooms-v0: its goal-offset tasks, budget 2 x the offset); None: the env's own."""
    levels: Literal[1, 2] = 1
    """1: flat planner; 2: hierarchical: a high level picks subgoals among the data's frames (a graph over them, see world/planning/hierarchy.py), the low level (the flat planner) plans to the current subgoal; also runs the flat planner on the same tasks (flat_success_rate)."""
    subgoal_data: str = ""
    """plan.levels=2: trajectory shards whose frames are the candidate subgoals (the support of the data); '' = the world model's training shards (data.shards of its run)."""
    subgoal_stride: int = _positive(4)
    """plan.levels=2: data steps between two graph nodes of a trajectory."""
    subgoal_nodes: int = _positive(1500)
    """plan.levels=2: at most this many graph nodes (whole trajectories, in shard order)."""
    subgoal_neighbours: int = _positive(5)
    """plan.levels=2: links from a node to its nearest nodes of other places (distance at most the median distance of consecutive nodes of a trajectory)."""
    subgoal_steps: int | None = _positive(None)
    """plan.levels=2: data steps along the graph path from the current node to the subgoal; None: plan.horizon."""
    goal_cost: Literal["energy", "tempo", "blend"] = "energy"
    """The goal term at every imagined step: energy (the latent L1 to the goal image), tempo (the temporal-distance head's predicted env steps to the goal, over its cap; needs a model trained with world.tempo) or blend (energy + plan.tempo_weight x that). Reduced over the horizon by plan.energy."""
    tempo_weight: float = _non_negative(1.0)
    """plan.goal_cost=blend: weight of the predicted steps-to-goal (in units of the head's cap) beside the latent energy."""

    def check(self) -> None:
        bad = sorted(set(self.baselines) - {"random", "random_model", "oracle"})
        if bad:
            raise ConfigError(
                f"plan.baselines: unknown {bad} (choose from random, random_model, oracle)"
            )
        if self.elites > self.samples:
            raise ConfigError(
                f"plan.elites ({self.elites}) must be <= plan.samples ({self.samples})"
            )

    risk: Literal["mean", "cvar", "worst"] = "mean"
    """A world model with a latent (discrete or continuous): how the energies of the plan.futures futures of one action sequence become its energy: their mean (expected energy), CVaR (the mean of the worst plan.cvar_alpha share of them) or the worst. The energy of each future is the one energy of vjepa/world/planning/costs.py (with the guardrails)."""
    cvar_alpha: float = _ranged(0.25, lambda v: 0 < v <= 1, "must be within (0, 1]")
    """plan.risk=cvar: the share of the worst futures averaged (1: the mean)."""
    futures: int = _non_negative(0)
    """A world model with a latent: futures rolled out per action sequence. Discrete: code sequences drawn from the router step by step on stratified uniforms that every candidate shares (0: the model's number of codes K). Continuous: z per step drawn from the prior N(0, I), stratified and shared alike (0: one future with z = 0, the prior mean). Planning time grows with it."""

    guard_mode: Literal["penalty", "reject", "lagrangian"] = "penalty"
    """How the guardrail terms are enforced: a fixed penalty (weight x term at every step), rejection (a sample whose hazard exceeds plan.guard_threshold at any step never enters the elite set while a safe one exists), or an augmented Lagrangian (the hazard weight rises by dual ascent across replans while the plan violates)."""
    guard_weight: float = _non_negative(1.0)
    """Weight of the hazard term: the hazard head's probability (oracle: the env's violation_states) summed over every rollout step; used when the model has a hazard head (hazard.pt) or the oracle's env has violation_states."""
    guard_threshold: float = _ranged(0.5, lambda v: 0 < v < 1, "must be within (0, 1)")
    """Hazard probability above which a step counts as violating (reject and lagrangian modes)."""
    guard_dual_lr: float = _non_negative(1.0)
    """Lagrangian mode: dual-ascent step on the hazard weight per replan (x the plan's worst hazard minus plan.guard_threshold)."""
    action_weight: float = _non_negative(0.0)
    """Weight of the action-magnitude term: mean squared action (in half-ranges of the action box) summed over the steps."""
    smooth_weight: float = _non_negative(0.0)
    """Weight of the action-smoothness term: mean squared change between consecutive actions (in half-ranges) summed over the steps."""
    forbidden_images: list[str] = field(default_factory=list)
    """Example images of forbidden states (files, encoded like the goal image): a repulsion exp(-L1 / plan.forbidden_scale) from the nearest one at every step, weighted by plan.forbidden_weight."""
    forbidden_weight: float = _non_negative(1.0)
    """Weight of the repulsion from plan.forbidden_images."""
    forbidden_scale: float = _positive(0.1)
    """Latent L1 distance scale of the repulsion from plan.forbidden_images."""
