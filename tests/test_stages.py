"""The stages both data streams share (vjepa.data.stages): seeds, batching, the one handler."""

from __future__ import annotations

import torch

from vjepa.data.errors import DataErrors
from vjepa.data.stages import AUG, Clips, augment_generator, batched, generator, parse_sample


def _draw(gen: torch.Generator) -> list[int]:
    return torch.randint(0, 1 << 30, (4,), generator=gen).tolist()


def test_augmentation_seeds_follow_seed_rank_worker_step() -> None:
    # The one order (seed, tag, rank, worker, epoch, index); evaluation keeps its old one.
    assert _draw(augment_generator(7, 1, 2, 3, 4)) == _draw(generator(7, AUG, 1, 2, 3, 4))
    old_eval = augment_generator(7, 1, 2, 3, 4, epoch_first=True)
    assert _draw(old_eval) == _draw(generator(7, AUG, 3, 1, 2, 4))
    assert _draw(augment_generator(7, 1, 2, 3, 4)) != _draw(augment_generator(7, 2, 1, 3, 4))


def test_batched_counts_samples_not_rows_and_keeps_a_partial_batch_on_request() -> None:
    row = torch.zeros(1)
    items = [Clips(0, i, f"k{i}", i, [row, row]) for i in range(5)]  # two rows per sample
    full = list(batched(items, 2, partial=False))
    assert [(r.samples, len(r.videos), last.index) for r, last in full] == [(2, 4, 1), (2, 4, 3)]
    assert full[0][0].keys == ["k0", "k0", "k1", "k1"] and full[0][0].labels == [0, 0, 1, 1]
    with_last = list(batched(items, 2, partial=True))
    assert len(with_last) == 3 and with_last[-1][0].keys == ["k4", "k4"]


def test_bad_members_are_counted_by_reason_never_raised() -> None:
    errors = DataErrors()
    assert parse_sample({"__key__": "a", "json": b"{}"}, errors) is None
    assert parse_sample({"__key__": "b", "mp4": b"x"}, errors) is None
    assert parse_sample({"__key__": "c", "mp4": b"x", "json": b"[1]"}, errors) is None
    assert parse_sample({"__key__": "d", "MKV": b"x", "json": b'{"label": 3}'}, errors) == (
        "d",
        b"x",
        3,
    )
    assert errors.as_dict() == {"missing_video": 1, "missing_json": 1, "bad_json": 1}
    assert errors.batch_fields() == {
        "data_errors": errors.as_dict(),
        "decoder_fallbacks": {},
        "data_retries": {},
    }
