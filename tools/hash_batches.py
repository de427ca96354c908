"""Hash the batches the data loaders give for fixed seeds: a behaviour check for refactors.

Writes shards from ``data/sample`` (the bytes copied, no re-encode) into a temporary folder,
then draws batches from ``make_pretrain_loader`` (with masks; exact and resampled modes, a
resume from ``loader_state``, several clips per video) and from ``make_eval_loader`` (uniform
clips, three crops, and two passes of probe-training augmentation), each with 0 and 2 loader
workers, and prints one sha256 per case over every batch's keys and tensors. The same code and
the same machine give the same lines; a refactor that keeps the data pipeline's behaviour must
too::

    python tools/hash_batches.py > before.txt    # on the old code
    python tools/hash_batches.py > after.txt     # on the new code
    diff before.txt after.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from itertools import islice
from pathlib import Path

import torch

from vjepa.config import DataConfig, MaskConfig
from vjepa.data.formats import read_list
from vjepa.data.loader import loader_state, make_eval_loader, make_pretrain_loader
from vjepa.data.writer import write_shards
from vjepa.jepa.masks import MaskCollator

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _update(h: hashlib._Hash, value: object) -> None:
    """Feed one batch entry into ``h``: tensors by dtype, shape and bytes; the rest as JSON."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    elif isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
        for v in value:
            _update(h, v)
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())


NOT_HASHED = {"data_retries"}
"""Batch entries left out: remote-shard retry counts follow the network, not the pipeline
(and are always empty on the local shards used here)."""


def batches_digest(batches: Iterable[dict]) -> tuple[str, int]:
    """(sha256 hex, number of batches) over every key and value of ``batches`` but
    :data:`NOT_HASHED`."""
    h, n = hashlib.sha256(), 0
    for batch in batches:
        for key in sorted(set(batch) - NOT_HASHED):
            h.update(key.encode())
            _update(h, batch[key])
        n += 1
    return h.hexdigest(), n


def _pretrain(cfg: DataConfig, num_batches: int, **kw) -> Iterable[dict]:
    masks = MaskCollator(MaskConfig(), (2, 4, 4))  # a 4-frame, 64-pixel clip, patch 16
    return islice(make_pretrain_loader(cfg, mask_fn=masks, **kw), num_batches)


def _resumed(cfg: DataConfig, num_batches: int, seed: int) -> Iterable[dict]:
    """``num_batches`` batches, then a restart from loader_state and as many again."""
    first = list(_pretrain(cfg, num_batches, seed=seed))
    state = loader_state(num_batches, [b["data_state"] for b in first])
    return [*first, *_pretrain(cfg, num_batches, seed=seed, start=state)]


def _eval_passes(shards: str, cfg: DataConfig, passes: int, **kw) -> Iterable[dict]:
    loader = make_eval_loader(shards, data_cfg=cfg, num_workers=cfg.num_workers, **kw)
    return [b for _ in range(passes) for b in loader]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=6, help="pretraining batches per case")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--decoder", default="pyav", help="data.decoder (pyav: the same everywhere)")
    args = ap.parse_args()
    n, seed = args.batches, args.seed
    with tempfile.TemporaryDirectory() as tmp:
        listing = read_list(SAMPLE / "val.txt")
        shards = str(Path(tmp) / "val")
        write_shards(listing.items, shards, max_count=12, progress=False)
        for workers in (0, 2):
            base = DataConfig(
                shards=shards,
                batch_size=3,
                num_workers=workers,
                frames_per_clip=4,
                frame_step=2,
                crop_size=64,
                shuffle_buffer=8,
                decoder=args.decoder,
            )
            cases = {
                "pretrain": _pretrain(base, n, seed=seed),
                "pretrain_rank1": _pretrain(base, n, seed=seed, rank=1, world_size=2),
                "pretrain_clips2_uint8": _pretrain(
                    replace(base, num_clips=2, normalize_on_device=True), n, seed=seed
                ),
                "pretrain_resampled": _pretrain(replace(base, resampled=True), n, seed=seed),
                "pretrain_resumed": _resumed(base, n // 2, seed),
                "eval": _eval_passes(shards, base, 1, batch_size=5, num_clips=2, seed=seed),
                "eval_3crops": _eval_passes(shards, base, 1, batch_size=5, num_crops=3, seed=seed),
                "eval_train_aug_2passes": _eval_passes(
                    shards, base, 2, batch_size=5, num_crops=3, train_aug=True, seed=seed
                ),
                "eval_train_aug_rank1": _eval_passes(
                    shards, base, 1, batch_size=4, train_aug=True, seed=seed, rank=1, world_size=2
                ),
            }
            for name, batches in cases.items():
                digest, count = batches_digest(batches)
                print(f"workers={workers} {name:<24} batches={count:<3} sha256={digest}")


if __name__ == "__main__":
    main()
