"""The sections of a config: typed dataclasses, one docstring and one range check per field.

Each field's default is the only default of that setting; ``metadata["range"]`` holds its range
check (a predicate and what the value must be), run by ``vjepa.config.load.validate``. A section's
``check()`` holds the checks that relate two of its own fields. Which sections a command reads
is decided by its root in :mod:`vjepa.config.commands`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from vjepa.errors import UsageError


class ConfigError(UsageError):
    """A user error in a config file or override; the message names the key."""


# ----------------------------------------------------------------------------------------
# Range checks, kept in each field's metadata
# ----------------------------------------------------------------------------------------


def _ranged(default: Any, ok: Callable[[Any], bool], what: str) -> Any:
    """A field with ``default`` whose value (unless None) must satisfy ``ok``: ``what`` says how."""
    return field(default=default, metadata={"range": (ok, what)})


def _positive(default: Any) -> Any:
    return _ranged(default, lambda v: v > 0, "must be > 0")


def _non_negative(default: Any) -> Any:
    return _ranged(default, lambda v: v >= 0, "must be >= 0")


def _at_least(default: Any, low: int) -> Any:
    return _ranged(default, lambda v: v >= low, f"must be >= {low}")


def check_predictor(width: int, heads: int, prefix: str) -> None:
    """A predictor's width must split into its heads (model.* and world.* predictors)."""
    if width % heads:
        raise ConfigError(f"{prefix}pred_width must be divisible by {prefix}pred_heads")


# ----------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------


class Section:
    """A config section: a dataclass whose ``check()`` relates its fields (after range checks)."""

    def check(self) -> None:
        """Checks that relate two fields of this section; raises ConfigError naming the key."""


@dataclass
class RunConfig(Section):
    """Where a run writes and how it is seeded."""

    dir: str = "runs/default"
    """Output folder: config.yaml, metrics.jsonl, checkpoints/, plots (or report.json for probes)."""
    seed: int = 0
    """Root seed; every random draw derives its generator from (seed, rank, worker, step)."""
    log_every: int = _positive(10)
    """Write a metrics.jsonl row (and tracker scalars) every this many optimizer steps."""
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Accelerate trackers to log to: any of tensorboard, wandb (empty list: none)."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms (and CUBLAS_WORKSPACE_CONFIG on GPUs): an op without a
    deterministic kernel raises. Same seed, workers, threads and decoder give the same run."""


@dataclass
class RetryConfig(Section):
    """Remote shards (``http(s)://``, ``s3://``; vjepa.data.remote): retries of a failed open
    or a broken transfer, resumed from the bytes already read, and what becomes of a shard
    that fails after them."""

    tries: int = _positive(4)
    """Attempts per stall: a failed open, or a transfer broken at one byte, is tried this many
    times in all (1: no retry). Progress resets the count. A permanent answer (HTTP 4xx, S3
    NoSuchKey / AccessDenied, no credentials) is not retried."""
    backoff_s: float = _non_negative(0.5)
    """Wait before the first retry of a stall, in seconds; it doubles with each further retry."""
    backoff_max_s: float = _non_negative(8.0)
    """Longest wait between two retries, in seconds (at least backoff_s)."""
    timeout_s: float = _positive(30.0)
    """Connect and read timeout of one request, in seconds."""
    give_up_after: int = _positive(3)
    """This many shards in a row failing for one and the same cause before any shard was read
    (no credentials, a wrong bucket, no network) stop the run at once: one line with the
    transport's cause, exit 2."""
    on_failure: Literal["skip", "stop"] = "skip"
    """A shard still failing after its tries: ``skip`` counts it in data_errors
    (shard_unreachable: nothing read; shard_truncated: cut for good, its whole samples before
    the cut kept) and the run goes on with the other shards; ``stop`` ends the run with one
    line naming the shard's URL and the cause, exit 2."""

    def check(self) -> None:
        if self.backoff_max_s < self.backoff_s:
            raise ConfigError(
                f"data.retry.backoff_max_s ({self.backoff_max_s}) must be >= "
                f"data.retry.backoff_s ({self.backoff_s})"
            )


@dataclass
class DataConfig(Section):
    """Training (and probing) clips: where they come from and how they are cut."""

    shards: str = "runs/shards/sample"
    """Training shard URLs: a folder, a glob, a brace pattern (a-{000000..000009}.tar), pipe:, http(s) or s3 URL."""
    batch_size: int = _positive(8)
    """Clips per process per optimizer micro-step."""
    num_workers: int = _non_negative(2)
    """DataLoader worker processes per training process (0 = decode in the main process)."""
    frames_per_clip: int = _positive(16)
    """Frames in one clip (must be a multiple of model.tubelet_size)."""
    frame_step: int = _positive(4)
    """Take every frame_step-th source frame (ignored when fps is set)."""
    fps: float | None = None
    """Resample the clip to this frame rate instead of using frame_step."""
    num_clips: int = _positive(1)
    """Clips cut from one video per sample (all from one decoder open)."""
    crop_size: int = _positive(224)
    """Spatial side of the network input, in pixels."""
    random_resize_scale: tuple[float, float] = (0.3, 1.0)
    """Area range of the random-resized crop (train)."""
    random_resize_aspect: tuple[float, float] = (0.75, 1.35)
    """Aspect-ratio range of the random-resized crop (train)."""
    hflip: bool = True
    """Random horizontal flip (one decision per clip)."""
    drift: float = _non_negative(0.0)
    """Training clips only: move the crop window at a random constant velocity of up to this
    many source pixels per clip frame (a simulated camera pan), so a static background moves
    within the clip and copying the context no longer predicts it (issue 27). 0: off."""
    short_video: Literal["pad", "skip"] = "pad"
    """A video shorter than the clip span: repeat its last frame (pad) or skip it."""
    min_frames: int = _positive(1)
    """Videos with fewer decodable frames than this are skipped (counted as too_short)."""
    shuffle_buffer: int = _non_negative(256)
    """Samples held in the seeded shuffle buffer (0: no shuffle)."""
    shuffle_cover_mb: float = _non_negative(512.0)
    """A corpus whose shards total at most this many MB (their manifest.json says) is shuffled
    whole: the buffer grows to hold all of it, so batches mix classes however the shards were
    written. Raw (undecoded) samples; each loader worker holds only its share. 0: never."""
    resampled: bool = False
    """Infinite resampled shard stream (large runs); False = exact epochs, exact resume position."""
    decoder: Literal["auto", "decord", "torchcodec", "pyav"] = "auto"
    """Video decoder backend. ``auto``: the fastest installed one (torchcodec, PyAV, decord, in
    that order; measured in docs/benchmarks.md), retrying a sample that it cannot decode with
    the next one (counted as a decoder fallback, not a data error); a name: only that one."""
    normalize_on_device: bool = False
    """Workers return uint8 clips and normalisation happens on the accelerator (faster)."""
    retry: RetryConfig = field(default_factory=RetryConfig)
    """Retries and failures of remote shards (the ``data.retry.*`` keys below)."""

    def check(self) -> None:
        for name in ("random_resize_scale", "random_resize_aspect"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"data.{name} must satisfy 0 < low <= high, got {(lo, hi)}")


@dataclass
class MaskBlockConfig(Section):
    """One 3D multi-block mask generator: the target is the union of num_blocks blocks."""

    num_blocks: int = 8
    """Blocks drawn per sample; the target is their union."""
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    """Fraction of the h x w token grid covered by one block (range)."""
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    """Fraction of the temporal token axis covered by one block (range)."""
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    """Block aspect ratio h/w (range)."""


@dataclass
class MaskConfig(Section):
    """How context and target tokens are chosen for each clip."""

    kind: Literal["multiblock", "tube", "random", "future"] = "multiblock"
    """multiblock (V-JEPA), tube or random (VideoMAE-style alternatives), or future: the
    context is the first time steps, the target every token of the later ones (ratio of them)."""
    blocks: list[MaskBlockConfig] = field(
        default_factory=lambda: [
            MaskBlockConfig(num_blocks=8, spatial_scale=(0.15, 0.15)),
            MaskBlockConfig(num_blocks=2, spatial_scale=(0.7, 0.7)),
        ]
    )
    """Multi-block generators (each gives one (context, target) pair per clip)."""
    ratio: float = _ranged(0.9, lambda v: 0 < v < 1, "must be within (0, 1)")
    """Masked (target) fraction for the tube and random kinds; for future, the fraction of the
    temporal token steps that are predicted (at least 1, at most all but 1)."""

    def check(self) -> None:
        for i, block in enumerate(self.blocks):
            for name in ("spatial_scale", "temporal_scale"):
                lo, hi = getattr(block, name)
                if not 0 < lo <= hi <= 1:
                    raise ConfigError(
                        f"mask.blocks[{i}].{name} must satisfy 0 < low <= high <= 1, got {(lo, hi)}"
                    )
            if block.num_blocks < 1:
                raise ConfigError(f"mask.blocks[{i}].num_blocks must be >= 1")


@dataclass
class ModelConfig(Section):
    """Encoder and predictor architecture."""

    name: str = "large"
    """Encoder size, a row of vjepa.models.encoder.SIZES (tiny_cpu, tiny, small, base, large, huge, giant, giant_v2, gigantic, gigantic_v2)."""
    patch_size: int = _positive(16)
    """Spatial patch side in pixels."""
    tubelet_size: int = _positive(2)
    """Frames per tubelet (temporal patch)."""
    pos_embed: Literal["sincos", "rope"] = "sincos"
    """Fixed 3D sin-cos position embedding (V-JEPA) or 3D rotary embedding (V-JEPA 2)."""
    frame_diff: bool = False
    """Stack each frame's difference to the previous frame onto its RGB channels (6 input
    channels), so motion is linear in the input (issue 27). Not in the official checkpoints."""
    rgb: bool = True
    """Keep the frames' RGB channels in the input. ``false`` (with ``frame_diff: true``) feeds
    only the frame differences: a still background is then exactly zero input, so neither the
    encoder nor a teacher of the same architecture can spend features on it, and whatever the
    objective pays for is motion (issue 27). Not in the official checkpoints."""
    centre_input: bool = False
    """Subtract from each pixel its mean over the clip's frames (over the visible frames, for a
    context) before the patch embedding: a still background is then zero input, as with
    ``rgb: false``, while what moves keeps its colour and shape, and a panning scene keeps its
    moving texture (issue 27). Not in the official checkpoints."""
    stem: Literal["linear", "conv"] = "linear"
    """Patch embedding: ``linear`` (one Conv3d per tubelet, the official ViT) or ``conv``: a
    small conv net at a 4-pixel stride pooled to the patch grid (vjepa.models.stem), for small
    frames where a patch-4 ViT is too slow. Not in the official checkpoints."""
    pred_width: int = _positive(384)
    """Predictor width."""
    pred_depth: int = _positive(12)
    """Predictor depth (blocks)."""
    pred_heads: int = _positive(12)
    """Predictor attention heads."""
    activation_checkpointing: bool = False
    """Recompute block activations in the backward pass (saves memory)."""
    compile: bool = False
    """Wrap the models in torch.compile."""

    def check(self) -> None:
        check_predictor(self.pred_width, self.pred_heads, "model.")
        if not self.rgb and not self.frame_diff:
            raise ConfigError("model.rgb: false needs model.frame_diff: true (no input left)")


@dataclass
class OptimConfig(Section):
    """AdamW and its per-step schedules."""

    lr: float = _positive(6.25e-4)
    """Peak learning rate (after warmup)."""
    start_lr: float = _non_negative(2e-4)
    """Learning rate at step 0 (linear warmup to lr)."""
    final_lr: float = _non_negative(1e-6)
    """Learning rate at the last step (cosine decay from lr)."""
    warmup_steps: int = _non_negative(1000)
    """Linear warmup length in optimizer steps."""
    weight_decay: float = _non_negative(0.04)
    """Weight decay at step 0 (biases, norms and 1-D parameters get none)."""
    final_weight_decay: float = _non_negative(0.4)
    """Weight decay at the last step (cosine schedule)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    eps: float = _positive(1e-8)
    """AdamW epsilon."""
    clip_grad: float = _non_negative(10.0)
    """Clip the global gradient norm to this value (0: no clipping)."""
    ema: tuple[float, float] = (0.998, 1.0)
    """Target-encoder EMA momentum, linear from the first to the second value over the run."""


@dataclass
class LoopConfig(Section):
    """The training loop (`vjepa pretrain`, `vjepa world train`, `vjepa finetune`): steps,
    checkpoints, precision."""

    max_steps: int = _positive(100_000)
    """Optimizer steps in the whole run (the schedules span this many)."""
    checkpoint_every: int = _positive(1000)
    """Save a checkpoint every this many steps (and at the end)."""
    keep_last: int = _positive(2)
    """Complete checkpoints kept; older ones are deleted after a new one is complete."""
    grad_accum: int = _positive(1)
    """Micro-batches per optimizer step (accelerator.accumulate)."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast dtype when not set by accelerate launch (bf16 on GPU; fp32 is fastest on CPU)."""
    health_every: int = _positive(200)
    """Log representation health (feature std, effective rank) every this many steps."""
    max_bad_steps: int = _positive(20)
    """Stop after this many consecutive non-finite losses or gradients."""
    fsdp: bool = False
    """Shard parameters, gradients and optimizer state with FSDP2 (torch fully_shard) instead of
    replicating them (DDP): every transformer Block is one unit, the rest the root unit. Needs a
    multi-process launch (accelerate launch --multi_gpu, or ACCELERATE_USE_CPU=1 on CPUs);
    checkpoints stay full state dicts, interchangeable with DDP runs."""
    threads: Literal["auto"] | int = _ranged(
        "auto", lambda v: v == "auto" or v >= 1, "must be auto or an integer >= 1"
    )
    """Intra-op threads of each training process. auto: the cores this process may use
    (os.sched_getaffinity) shared among the processes on this machine (LOCAL_WORLD_SIZE), minus
    one per loader worker (each worker runs one thread), at least 1, so nothing oversubscribes
    (OpenMP threads spin-wait: oversubscribed, a step gets 15-30x slower). An integer: exactly
    that many."""
    debug_dump: bool = False
    """Write per-rank debug files into run.dir: the sample keys of every batch (keys-rank<r>.txt)
    and a checksum of the final parameters (params-rank<r>.txt), to check data sharding and DDP."""
    keep_best: str = ""
    """Keep the checkpoint with the highest value of this metric of the run's periodic evaluation
    in run.dir/best/ (vjepa pretrain: online_knn_top1 or online_linear_top1 of the online probe;
    vjepa finetune: dev_top1). Empty: off. Never read by the training itself."""


@dataclass
class ObjectiveConfig(Section):
    """The JEPA objective of `vjepa pretrain`: the regression loss, its target and the
    anti-collapse terms."""

    loss_exp: float = _positive(1.0)
    """Exponent of the regression loss (1 = L1)."""
    reg_var: float = _non_negative(0.0)
    """Weight of the VICReg-style variance term on predictor outputs (0 = off)."""
    reg_cov: float = _non_negative(0.0)
    """Weight of the VICReg-style covariance term on predictor outputs (0 = off)."""
    target: Literal["ema", "online"] = "ema"
    """Regression target: ema = an EMA teacher's layer-normed features (V-JEPA); online = the
    online encoder's own features of the full clip, gradients through both sides and no teacher
    (LeWM's end-to-end JEPA; it collapses unless an across-clip regulariser such as sigreg is on)."""
    reg_input: Literal["encoder", "predictor"] = "encoder"
    """What the across-clip terms (batch_var, batch_cov, sigreg) see: the online encoder's features
    of the full clip (in ema mode one extra encoder pass) or the predictor outputs."""
    reg_pooled: bool = False
    """Across-clip terms on mean-pooled clip features [B, D] instead of at each token position."""
    batch_var: float = _non_negative(0.0)
    """Weight of the VICReg variance hinge with the std taken ACROSS CLIPS of the batch at each
    token position (VICReg's own form; sees a collapse in which all clips look alike). 0 = off."""
    batch_cov: float = _non_negative(0.0)
    """Weight of the VICReg covariance term across the clips of the batch (0 = off)."""
    sigreg: float = _non_negative(0.0)
    """Weight of SIGReg (LeJEPA): Epps-Pulley test of random 1-D projections of the features
    across the clips of the batch against N(0, 1) (~0.05; 0 = off)."""
    sigreg_slices: int = _positive(256)
    """SIGReg: random projection directions per step."""
    target_mode: Literal["raw", "centred", "delta", "change"] = "raw"
    """Targets relative in time (issue 27, the slow-feature trap). raw: the layer-normed teacher
    features (V-JEPA). delta: minus the same spatial token's target at the last context time
    step of mask.kind future (the first time step for other masks): the predictor regresses what
    changed since the context, and a static background contributes exactly 0. centred: minus the
    clip's temporal mean per spatial token. change: |delta|, never negative, so a predictor at
    zero still has a mean to move toward where the object goes. With sparse targets L1's optimum
    is the median, 0 wherever the object is not certain: pair delta / centred with loss_exp 2."""
    target_features: Literal["encoder", "patch", "pixels", "diff_pixels"] = "encoder"
    """What the predictor regresses (ema mode). encoder: the target encoder's output (V-JEPA).
    patch: only its patch embedding, a linear projection of each tubelet's pixels: local
    targets, exactly constant on a static background (issue 27). pixels: each masked
    tubelet's own pixels, normalised per tubelet (VideoMAE's norm_pix_loss: minus their mean,
    over their std); no teacher, the predictor's head emits 3 x tubelet x patch^2 values.
    diff_pixels: the tubelet's backward frame differences (not normalised; a static background
    gives exactly 0). Pair both with loss_exp 2 (MSE, as VideoMAE). The trained encoder is then
    the context one (vjepa.jepa.pixels)."""
    teacher: str = ""
    """A frozen pretrained teacher (SALT, "static teacher asymmetric latent training"): a run
    folder, checkpoint or export folder, read as every encoder reader does
    (vjepa.load_encoder: a run's trained encoder). Its features of the full clip, layer-normed,
    are the targets instead of the EMA / random teacher's; it never changes (no EMA update) and
    the trained encoder is the context one. Its token grid (patch_size, tubelet_size) must match
    model's; its width may differ (the predictor's head emits it). Needs target ema and
    target_features encoder. Empty: off."""
    teacher_input: Literal["same", "diff"] = "same"
    """What the teacher sees. same: the clip, as the student (V-JEPA). diff: only the frame
    differences: the teacher is a frozen random init of model.* with model.frame_diff true and
    model.rgb false, so a still background gives it zero input and the targets are about what
    moves, while the student keeps its own input (issue 27). Needs a frozen teacher
    (optim.ema [1.0, 1.0]: an EMA cannot average encoders with other inputs); the trained
    encoder is then the context one."""
    change_weight: float = _non_negative(0.0)
    """Weight each target token's loss by 1 + change_weight x the RMS change of its layer-normed
    teacher feature since the delta reference time step (rescaled to mean 1 per clip), so the
    few tokens an object moves through carry the loss. 0 = off (every token weighs the same)."""
    time_var: float = _non_negative(0.0)
    """Weight of the within-clip variance hinge (PLDM's std_loss_t) on the context encoder's
    features of the whole clip, after removing the time pattern shared by the batch: features
    that do not vary within a clip over time get no credit. One extra encoder pass per step.
    0 = off."""
    rollout: int = _positive(1)
    """Multi-step rollout of mask.kind future (eb_jepa's multi-step training; issue 27): the
    target time steps are cut into this many chunks in time order, and the predictor predicts
    them one chunk after another, each chunk seeing the context plus its own predictions of the
    earlier chunks (fed back through a learned projection, gradients through the whole rollout).
    Every target token is still predicted once, so the loss keeps its scale. 1 = off (every
    target step predicted at once from the context, V-JEPA)."""
    centre_prob: float = _ranged(0.0, lambda v: 0 <= v <= 1, "must be within [0, 1]")
    """Probability that a training batch is centred in time at the input (each pixel minus its
    clip mean, as model.centre_input) for the context encoder and the teacher alike; the encoder
    keeps its plain input everywhere else (probes, export, surprise, world models), so its
    random-init floor is the plain input's. A train-time augmentation against the slow-feature
    trap (issue 27): on a centred batch a still background is zero, so only what moves is left to
    predict. Needs model.centre_input false. 0 = off."""
    reg_scope: Literal["global", "local"] = "global"
    """Clips the across-clip terms (batch_var, batch_cov, sigreg) take their statistics over:
    global = the whole batch of every rank (gathered, with gradients; one process on the
    concatenated batch gives the same loss and gradients), local = this rank's batch only."""

    def check(self) -> None:
        if self.target == "online" and self.target_features != "encoder":
            raise ConfigError(
                f"objective.target_features {self.target_features} needs objective.target ema "
                "(online targets are the encoder's own features)"
            )
        if self.teacher_input == "diff" and (
            self.teacher or self.target != "ema" or self.target_features != "encoder"
        ):
            raise ConfigError(
                "objective.teacher_input diff needs objective.target ema, target_features encoder "
                "and no objective.teacher (it is a random-init teacher of its own)"
            )
        if self.teacher and (self.target != "ema" or self.target_features != "encoder"):
            raise ConfigError(
                "objective.teacher needs objective.target ema and objective.target_features "
                f"encoder (got {self.target} / {self.target_features}): the teacher gives encoder "
                "features"
            )


@dataclass
class ProbeConfig(Section):
    """Frozen-backbone evaluation on labelled shards."""

    backbone: str = "random"
    """Anything vjepa.load_encoder accepts (run folder, checkpoint, export, official file) or random."""
    random_model: str = "tiny_cpu"
    """Encoder size used when backbone is random (architecture of the random floor)."""
    num_heads: int | None = _positive(None)
    """Attention heads of the backbone when it is an official-format file of a non-official width
    (the weights do not fix them; extract's --num-heads); None: the official count, else
    width // 64, said in one line. (probe.heads is the attentive head's own.)"""
    encoder: Literal["target", "context"] = "target"
    """Which encoder of a run folder / checkpoint to probe: the target (EMA) encoder, or the
    context (online) encoder (the trained one when the teacher is frozen: optim.ema=[1.0, 1.0])."""
    train_shards: str = ""
    """Labelled training shards (URL pattern or folder)."""
    val_shards: str = ""
    """Labelled validation shards (URL pattern or folder)."""
    kind: Literal["attentive", "linear", "knn"] = "attentive"
    """Probe head: attentive pooler, linear on mean-pooled features, or cosine kNN."""
    epochs: int = _positive(20)
    """Training epochs of the head."""
    batch_size: int = _positive(16)
    """Clips per batch for feature extraction and head training."""
    lr: float = _positive(1e-3)
    """Peak learning rate of the head (cosine schedule)."""
    weight_decay: float = _non_negative(0.01)
    """Head weight decay."""
    warmup_epochs: int = _non_negative(0)
    """Linear warmup epochs of the head's lr."""
    lr_grid: list[float] = field(default_factory=list)
    """Extra heads with these lrs trained in the same pass; the best on validation is reported."""
    wd_grid: list[float] = field(default_factory=list)
    """Extra heads with these weight decays (crossed with lr_grid)."""
    depth: int = _positive(1)
    """Attentive probe: cross-attention blocks."""
    heads: int = _positive(16)
    """Attentive probe: attention heads."""
    num_queries: int = _positive(1)
    """Attentive probe: learnable query tokens."""
    k: int = _positive(20)
    """kNN: neighbours."""
    temperature: float = _positive(0.07)
    """kNN: softmax temperature of the similarity weights."""
    train_clips: int = _positive(1)
    """Temporal clips per training video."""
    eval_clips: int = _positive(1)
    """Temporal clips per validation video (spread uniformly over the video)."""
    eval_crops: Literal[1, 3] = 1
    """Spatial crops per validation clip (1 = centre, 3 = left/centre/right)."""
    cache_features: bool = True
    """Extract frozen features once: linear / kNN cache pooled features on disk in the run folder, attentive keeps tokens in memory. False: attentive re-runs the encoder every epoch on augmented clips and streams validation (sets too large for memory)."""
    splits: list[int] = field(default_factory=list)
    """Dataset splits (UCF101 / HMDB51: [1, 2, 3]): one probe per split with '{split}' in the shard patterns replaced; reports the mean."""

    def check(self) -> None:
        for lr in self.lr_grid:
            if lr <= 0:
                raise ConfigError(f"probe.lr_grid values must be > 0, got {lr}")


@dataclass
class SurpriseConfig(Section):
    """Violation of expectation (`vjepa surprise`): is the model more surprised by impossible videos?"""

    model: str = "random"
    """Encoder + predictor: a pretraining run or checkpoint folder, an export folder with its predictor, an official V-JEPA file, or random (this config's model.* at random init, seeded by run.seed)."""
    pairs: str = ""
    """CSV with header possible,impossible[,category]; video paths relative to the CSV (tools/make_surprise_pairs.py writes one)."""
    context_frames: int = _positive(4)
    """Frames of each window given as context (a multiple of model.tubelet_size, below the window length); the predictor predicts the rest."""
    stride: int = _positive(2)
    """Source frames between the starts of consecutive windows."""
    score: Literal["max", "mean"] = "max"
    """A video's score from its window surprises: max (Garrido et al. 2025) or mean; report.json has both."""
    mask_index: int = _non_negative(0)
    """Which of the predictor's learned mask tokens marks the predicted tokens (one per pretraining mask generator)."""
    target_mode: Literal["auto", "raw", "delta", "centred", "change"] = "auto"
    """What the predictor's output is compared with, as objective.target_mode in pretraining (delta: the change since the last context time step). auto: the saved run's own mode (raw for official files and random); `vjepa surprise`'s random floor takes the pretrained model's."""
    batch_size: int = _positive(16)
    """Windows per forward pass."""
    num_heads: int | None = _positive(None)
    """Encoder attention heads for official files whose width does not fix them (default: the official count, else head dim 64)."""
    pred_num_heads: int | None = _positive(None)
    """Predictor attention heads, as num_heads (default: the official count, else head dim 64)."""
    plot_pairs: int = _positive(4)
    """Pairs shown in surprise.png."""
