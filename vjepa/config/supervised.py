"""The sections that read labels: ``finetune`` (`vjepa finetune`) and ``online_probe`` (the probe
that `vjepa pretrain` runs every N steps). Same rules as :mod:`vjepa.config.sections`: every
default lives here, with a docstring and a range check per field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vjepa.config.sections import ConfigError, Section, _non_negative, _positive, _ranged


def _fraction(default: float) -> float:
    return _ranged(default, lambda v: 0 <= v < 1, "must be within [0, 1)")


@dataclass
class FinetuneConfig(Section):
    """Full fine-tuning (`vjepa finetune`): the encoder and a classification head trained end to
    end on ``data.shards`` (labelled), VideoMAE / V-JEPA 2 recipe. ``data.*`` cuts the training
    clips (``data.hflip``: only for classes that a flip does not change), ``optim.*`` is the
    schedule, ``model.*`` the architecture of a random backbone."""

    backbone: str = "random"
    """The encoder to start from: anything vjepa.load_encoder accepts (a pretraining run or checkpoint folder, an export folder, an official V-JEPA file) or random (size model.name, seeded by run.seed)."""
    encoder: Literal["target", "context"] = "target"
    """Which encoder of a run folder / checkpoint: target (default: the one that trained, the context encoder when the teacher was frozen) or context."""
    num_heads: int | None = _positive(None)
    """Attention heads of an official-format backbone of a non-official width (default: the official count, else width // 64)."""
    head: Literal["attentive", "linear"] = "attentive"
    """Classification head on the encoder's tokens: the attentive pooler of the probe (queries cross-attend to every token) or linear on mean-pooled tokens."""
    head_depth: int = _positive(1)
    """Attentive head: blocks (depth - 1 self-attention blocks, then the cross-attention one)."""
    head_heads: int = _positive(16)
    """Attentive head: attention heads (must divide the encoder width)."""
    num_classes: int = _non_negative(0)
    """Classes; 0: the label_names of the training shards' manifest.json."""
    layer_decay: float = _ranged(0.75, lambda v: 0 < v <= 1, "must be within (0, 1]")
    """Layer-wise lr decay over an encoder of L blocks: block i (0 = the first) trains at optim.lr x layer_decay^(L - i), the patch embedding at layer_decay^(L + 1), the final norm and the head at optim.lr (1: one lr for all)."""
    drop_path: float = _fraction(0.1)
    """Stochastic depth: the drop rate of the last block's residual branches, rising linearly from 0 at the first (0: off)."""
    label_smoothing: float = _fraction(0.1)
    """Label smoothing of the cross-entropy targets."""
    mixup: float = _non_negative(0.8)
    """Mixup: alpha of the Beta(alpha, alpha) mixing weight of a batch with its reverse (0: off)."""
    cutmix: float = _non_negative(1.0)
    """CutMix: alpha of the Beta law of the kept area; the box is the same in every frame (0: off). With both on, each batch takes one of the two at random."""
    mix_prob: float = _ranged(1.0, lambda v: 0 <= v <= 1, "must be within [0, 1]")
    """Probability that a batch is mixed (mixup or CutMix) at all."""
    randaug_ops: int = _non_negative(0)
    """RandAugment (timm's rand-increasing ops, VideoMAE's video form): ops drawn per training clip, each applied with probability 0.5, with the same parameters on every frame of the clip (0: off; VideoMAE: 4)."""
    randaug_magnitude: float = _ranged(7.0, lambda v: 0 <= v <= 10, "must be within [0, 10]")
    """RandAugment: the magnitude of every op, on timm's 0-10 scale (VideoMAE: 7)."""
    randaug_magnitude_std: float = _non_negative(0.5)
    """RandAugment: std of the Gaussian noise added to the magnitude per op (clamped to [0, 10]; VideoMAE: 0.5; 0: fixed)."""
    dev_shards: str = ""
    """Labelled shards evaluated every eval_every steps (dev_top1 in metrics.jsonl; train.keep_best=dev_top1 keeps the best checkpoint). Empty: no evaluation during training."""
    val_shards: str = ""
    """Labelled shards of the final report (report.json: top-1 with its 95 % Wilson interval, per-clip predictions), on the kept best checkpoint, else the last one."""
    eval_every: int = _non_negative(0)
    """Evaluate on dev_shards every this many steps (and at the last step); 0: only the final report."""
    eval_clips: int = _positive(1)
    """Temporal clips per evaluated video (spread uniformly); class probabilities are averaged over all views."""
    eval_crops: Literal[1, 3] = 1
    """Spatial crops per evaluated clip (1 = centre, 3 = left/centre/right)."""
    eval_batch_size: int = _positive(16)
    """Videos per evaluation batch (each with eval_clips x eval_crops views)."""

    def check(self) -> None:
        if self.eval_every and not self.dev_shards:
            raise ConfigError("finetune.eval_every needs finetune.dev_shards (what to evaluate)")


@dataclass
class OnlineProbeConfig(Section):
    """A cheap probe that `vjepa pretrain` runs every N steps on the encoder being trained: kNN
    and a linear head on frozen pooled features of two labelled shard sets, decoded once and
    kept in memory (uint8: max_clips x the clip's bytes per set). Top-1 goes to metrics.jsonl,
    the trackers and health.png. It draws from its own generators only and restores the global
    RNG, so a run with it on trains exactly the weights of one with it off."""

    every: int = _non_negative(1000)
    """Run it every this many optimizer steps (and at the last) once train_shards and val_shards are set; 0: off. The default keeps its cost under 5 % of training time: 3.4 % measured on the demo's 2000-step pretraining on 2 CPU cores (README, online probe)."""
    train_shards: str = ""
    """Labelled shards of the kNN bank and the linear head's training set (empty: no online probe)."""
    val_shards: str = ""
    """Labelled shards it is scored on (a dev split: choosing a checkpoint on them is choosing; empty: no online probe)."""
    max_clips: int = _positive(512)
    """At most this many clips of each set (the first ones in shard order), one centre clip each."""
    encoder: Literal["auto", "context", "target"] = "auto"
    """The encoder probed: auto = the one that trains (the target encoder, or the context encoder when the teacher is frozen or absent), or as named."""
    k: int = _positive(20)
    """kNN: neighbours (cosine similarity, exp(sim / temperature) votes)."""
    temperature: float = _positive(0.07)
    """kNN: temperature of the votes."""
    epochs: int = _positive(100)
    """Linear head: epochs over the training set (AdamW, cosine lr, batches of batch_size)."""
    lr: float = _positive(0.1)
    """Linear head: peak learning rate (on layer-normed features)."""
    batch_size: int = _positive(64)
    """Clips per encoder batch and per linear-head step."""

    def interval(self) -> int:
        """Steps between two probes: ``every`` when both shard sets are given, else 0 (off)."""
        return self.every if self.train_shards and self.val_shards else 0
