"""One config root per command: each holds only the sections that command reads.

The root decides what a config file may say: a key of a section that the command does not read
is an error that names it (``plan.horizon`` given to ``vjepa pretrain``), as is an old key name
(one release of a message that names the new one, :data:`RENAMED`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vjepa.config.sections import (
    ConfigError,
    DataConfig,
    LoopConfig,
    MaskConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    ProbeConfig,
    RunConfig,
    SurpriseConfig,
)
from vjepa.config.supervised import FinetuneConfig, OnlineProbeConfig
from vjepa.config.world import PlanConfig, WorldConfig

_OBJECTIVE_KEYS = (
    "loss_exp",
    "reg_var",
    "reg_cov",
    "target",
    "reg_input",
    "reg_pooled",
    "batch_var",
    "batch_cov",
    "sigreg",
    "sigreg_slices",
    # issue 27's levers, which lived in train.* on the branch that introduced them
    "target_mode",
    "target_features",
    "change_weight",
    "time_var",
    "reg_scope",
)

RENAMED: dict[str, str] = {
    **{f"train.{k}": f"objective.{k}" for k in _OBJECTIVE_KEYS},
    "probe.backbone_heads": "probe.num_heads",
    "surprise.enc_heads": "surprise.num_heads",
    "surprise.pred_heads": "surprise.pred_num_heads",
}
"""Old dotted key -> its new name, for every command (a root's ``RENAMED`` comes first)."""


def check_clip_geometry(data: DataConfig, model: ModelConfig) -> None:
    """The clip must split into whole tubelets and patches of the model."""
    if data.frames_per_clip % model.tubelet_size:
        raise ConfigError(
            f"data.frames_per_clip ({data.frames_per_clip}) must be a multiple of "
            f"model.tubelet_size ({model.tubelet_size})"
        )
    if data.crop_size % model.patch_size:
        raise ConfigError(
            f"data.crop_size ({data.crop_size}) must be a multiple of model.patch_size "
            f"({model.patch_size})"
        )


def check_keep_best(train: LoopConfig, metrics: tuple[str, ...], every: int) -> None:
    """``train.keep_best`` must name a metric that this command's evaluation writes, and the
    evaluation must run (``every`` > 0)."""
    if not train.keep_best:
        return
    if train.keep_best not in metrics:
        known = ", ".join(metrics) if metrics else "none: this command has no evaluation"
        raise ConfigError(f"train.keep_best={train.keep_best!r} is not a metric of it ({known})")
    if not every:
        raise ConfigError(
            f"train.keep_best={train.keep_best} needs the evaluation that writes it to run "
            "(online_probe.train_shards + val_shards and online_probe.every > 0 / "
            "finetune.eval_every > 0)"
        )


class Root:
    """A command's config: its sections are the dataclass fields; ``check()`` relates them."""

    RENAMED: ClassVar[dict[str, str]] = {}
    """Old dotted key -> new, for this command only (before :data:`RENAMED`)."""

    def check(self) -> None:
        """Checks across sections; raises ConfigError naming the keys."""


class ClipRoot(Root):
    """A command that cuts clips (``data``) for a model (``model``)."""

    data: DataConfig
    model: ModelConfig

    def check(self) -> None:
        check_clip_geometry(self.data, self.model)


@dataclass
class PretrainRoot(ClipRoot):
    """`vjepa pretrain`: V-JEPA pretraining of an encoder and predictor."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    online_probe: OnlineProbeConfig = field(default_factory=OnlineProbeConfig)

    def check(self) -> None:
        super().check()
        if self.objective.teacher_input == "diff" and tuple(self.optim.ema) != (1.0, 1.0):
            raise ConfigError(
                f"objective.teacher_input diff needs optim.ema [1.0, 1.0] (a frozen teacher), got "
                f"{list(self.optim.ema)}: an EMA cannot average encoders with other inputs"
            )
        if self.objective.rollout > 1 and self.mask.kind != "future":
            raise ConfigError(
                f"objective.rollout {self.objective.rollout} needs mask.kind future (got "
                f"{self.mask.kind}): a rollout predicts the future time steps in order"
            )
        if self.objective.centre_prob > 0 and self.model.centre_input:
            raise ConfigError(
                "objective.centre_prob needs model.centre_input false (it centres some training "
                "batches of an encoder whose input is otherwise plain)"
            )
        p = self.online_probe
        if bool(p.train_shards) != bool(p.val_shards):
            raise ConfigError(
                "the online probe needs both online_probe.train_shards and online_probe.val_shards"
            )
        if p.interval() and self.train.fsdp:
            raise ConfigError("online_probe needs train.fsdp=false (it runs the submodules)")
        check_keep_best(self.train, ("online_knn_top1", "online_linear_top1"), p.interval())


@dataclass
class WorldTrainRoot(ClipRoot):
    """`vjepa world train`: an action-conditioned world model on trajectory shards.

    ``data.shards`` and ``data.batch_size`` say where the trajectories are and how many windows
    a batch holds; ``model.*`` is the architecture of a random encoder (world.encoder=random).
    """

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    world: WorldConfig = field(default_factory=WorldConfig)

    RENAMED: ClassVar[dict[str, str]] = {"train.loss_exp": "world.loss_exp"}

    def check(self) -> None:
        super().check()
        check_keep_best(self.train, (), 0)


@dataclass
class FinetuneRoot(ClipRoot):
    """`vjepa finetune`: an encoder and a classification head trained end to end on labelled
    shards; ``model.*`` is the architecture of a random backbone (finetune.backbone=random)."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def check(self) -> None:
        super().check()
        check_keep_best(self.train, ("dev_top1",), self.finetune.eval_every)


@dataclass
class ProbeRoot(ClipRoot):
    """`vjepa probe`: a frozen-backbone probe; ``model.*`` is the random floor's architecture."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)


@dataclass
class ExtractRoot(Root):
    """`vjepa extract --config`: the clip geometry (``data.*``) of the extracted features."""

    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class SurpriseRoot(ClipRoot):
    """`vjepa surprise`: violation of expectation; ``model.*`` / ``mask.*``: the random model's
    architecture (surprise.model=random)."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    surprise: SurpriseConfig = field(default_factory=SurpriseConfig)


@dataclass
class PlanRoot(Root):
    """`vjepa plan`: model-predictive control with a world model on held-out tasks."""

    run: RunConfig = field(default_factory=RunConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)


Config = (
    PretrainRoot | WorldTrainRoot | FinetuneRoot | ProbeRoot | ExtractRoot | SurpriseRoot | PlanRoot
)
"""The config of any command: the annotation of code shared between commands (the loop)."""

ROOTS: dict[str, type[Config]] = {
    "pretrain": PretrainRoot,
    "world train": WorldTrainRoot,
    "finetune": FinetuneRoot,
    "probe": ProbeRoot,
    "extract": ExtractRoot,
    "surprise": SurpriseRoot,
    "plan": PlanRoot,
}
"""`vjepa <command>` -> the root of its config."""
