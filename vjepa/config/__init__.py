"""Typed configuration: the only schema and the only place defaults live.

A config is a tree of dataclasses, one root per command (:mod:`vjepa.config.commands`) made of
sections (:mod:`vjepa.config.sections`). YAML files and ``a.b=value`` overrides are merged onto
the defaults by :func:`load_config` (:mod:`vjepa.config.load`)::

    cfg = load_config("configs/probe/demo_attentive.yaml", ["probe.epochs=2"], command="probe")
"""

from vjepa.config.commands import (
    RENAMED,
    ROOTS,
    Config,
    ExtractRoot,
    FinetuneRoot,
    PlanRoot,
    PretrainRoot,
    ProbeRoot,
    SurpriseRoot,
    WorldTrainRoot,
)
from vjepa.config.load import from_dict, load_config, range_of, save_config, to_dict, validate
from vjepa.config.sections import (
    ConfigError,
    DataConfig,
    LoopConfig,
    MaskBlockConfig,
    MaskConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    ProbeConfig,
    RetryConfig,
    RunConfig,
    SurpriseConfig,
)
from vjepa.config.supervised import FinetuneConfig, OnlineProbeConfig
from vjepa.config.world import PlanConfig, WorldConfig

__all__ = [
    "RENAMED",
    "ROOTS",
    "Config",
    "ConfigError",
    "DataConfig",
    "ExtractRoot",
    "FinetuneConfig",
    "FinetuneRoot",
    "LoopConfig",
    "MaskBlockConfig",
    "MaskConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OnlineProbeConfig",
    "OptimConfig",
    "PlanConfig",
    "PlanRoot",
    "PretrainRoot",
    "ProbeConfig",
    "ProbeRoot",
    "RetryConfig",
    "RunConfig",
    "SurpriseConfig",
    "SurpriseRoot",
    "WorldConfig",
    "WorldTrainRoot",
    "from_dict",
    "load_config",
    "range_of",
    "save_config",
    "to_dict",
    "validate",
]
