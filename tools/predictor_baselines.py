"""Does a pretrained predictor beat the trivial answers? (issue 27's zero-solution check)

Usage::

    python tools/predictor_baselines.py RUN [BATCHES]

Rebuilds the JEPA of ``RUN`` (a pretraining run folder: its config.yaml and latest checkpoint),
draws ``BATCHES`` (default 8) training batches with their masks from the run's own loader
(seed 0) and prints, as one JSON line, the objective's regression loss (``jepa_loss`` at the
run's ``objective.loss_exp``) of the first mask pair for:

- ``trained``: the trained predictor on the trained context encoder;
- ``zero``: predicting 0 everywhere (where delta and diff targets start);
- ``mean``: predicting one constant vector, the mean target of the batch's target tokens
  (what a predictor that ignores its input can reach at best under MSE);
- ``copy``: each target token's own target at the last context time step (the same spatial
  token), i.e. "nothing moved": the copy solution.

A predictor that learned where things go is below all three.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import yaml

from vjepa.config import from_dict
from vjepa.jepa.losses import jepa_loss
from vjepa.jepa.masks import apply_masks
from vjepa.jepa.model import build_jepa, delta_reference
from vjepa.train.checkpoint import file_prefixes, join_weights, load_checkpoint
from vjepa.train.pretrain import make_batches, video_on_device


def main(argv: list[str]) -> dict:
    run, batches = Path(argv[0]), int(argv[1]) if len(argv) > 1 else 8
    state = load_checkpoint(run)
    cfg = from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    cfg.data.num_workers = 0
    model = build_jepa(cfg)
    keys = ("encoder", "predictor", "target_encoder")
    files = {k: state[k] for k in keys}
    model.load_state_dict(join_weights(files, file_prefixes(model)))
    model.eval()
    exp, ref = cfg.objective.loss_exp, delta_reference(cfg)
    steps = model.time_steps
    sums = dict.fromkeys(("trained", "zero", "mean", "copy"), 0.0)
    stream = make_batches(cfg, 0, 1, None)
    with torch.no_grad():
        for _ in range(batches):
            batch = next(stream)
            video = video_on_device(batch, cfg, torch.device("cpu"))
            ctx, tgt = batch["ctx_idx"][0], batch["tgt_idx"][0]  # [B, Kc], [B, Kt]
            out = model.predict_targets(video, [ctx], [tgt])
            pred, target = out.preds[0], out.targets[0]  # [B, Kt, D]
            _, targets_all, _ = model._targets(video)  # [B, N, D]
            b, n, d = targets_all.shape
            grid = targets_all.view(b, steps, n // steps, d)
            copy = grid[:, ref : ref + 1].expand_as(grid).reshape(b, n, d)  # [B, N, D]
            answers = {
                "trained": pred,
                "zero": torch.zeros_like(target),
                "mean": target.mean(dim=(0, 1), keepdim=True).expand_as(target),
                "copy": apply_masks(copy, tgt),
            }
            for name, answer in answers.items():
                sums[name] += float(jepa_loss([answer], [target], exp)) / batches
    result = {"run": str(run), "batches": batches, "loss_exp": exp}
    result |= {k: round(v, 6) for k, v in sums.items()}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
