"""The one data-error handler: bad samples are counted by reason and logged, never fatal.

Reasons: ``empty``, ``not_video``, ``truncated``, ``no_frames``, ``decode_error``,
``unsupported``, ``too_short``, ``missing_video``, ``missing_json``, ``bad_json``,
``bad_shard`` (and, for trajectory shards, the world readers' own). The first of each reason
is logged with its sample key, then a periodic summary; the counts ride along in every batch.
A sample that the first decoder backend cannot read but a later one can (``data.decoder=auto``)
is no error: it is counted as a decoder fallback (``decord_decode_error``, ...;
``decoder_fallbacks`` in every batch). Remote shards add ``shard_unreachable`` and
``shard_truncated`` (a shard given up on after ``data.retry``), and the faults that retries
recovered are counted apart, by kind (``open``, ``resume``; ``data_retries`` in every batch):
vjepa.data.remote.
"""

from __future__ import annotations

import logging

from vjepa.errors import UsageError

log = logging.getLogger("vjepa.data")


class DataError(UsageError):
    """The data cannot feed training at all (e.g. no decodable sample in an epoch): exit 2."""


class DataErrors:
    """The one data-error handler: counts skipped samples by reason and logs them sparingly.

    The first occurrence of each reason is logged with the sample key and message; after that
    a summary every ``summary_every`` errors. It never raises and never sleeps.
    """

    def __init__(self, where: str = "", summary_every: int = 100) -> None:
        self.where = where
        self.summary_every = summary_every
        self.counts: dict[str, int] = {}
        self.total = 0
        self.fallbacks: dict[str, int] = {}  # decoder fallbacks that succeeded: not errors
        self.retries: dict[str, int] = {}  # remote faults recovered by a retry: not errors

    def count(self, reason: str, key: str = "?", err: BaseException | str | None = None) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.total += 1
        if self.counts[reason] == 1:
            log.warning("%sskipping sample %s: %s (%s)", self.where, key, reason, err or "")
        elif self.total % self.summary_every == 0:
            log.info("%sdata errors so far: %s", self.where, dict(sorted(self.counts.items())))

    def fallback(self, reason: str, key: str = "?") -> None:
        """A sample decoded by a later backend after ``reason`` (``<backend>_<why>``)."""
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        if self.fallbacks[reason] == 1:
            log.warning("%ssample %s decoded after a decoder fallback: %s", self.where, key, reason)

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def batch_fields(self) -> dict[str, dict[str, int]]:
        """What every batch carries: ``data_errors``, ``decoder_fallbacks`` and
        ``data_retries`` (copies)."""
        return {
            "data_errors": self.as_dict(),
            "decoder_fallbacks": dict(self.fallbacks),
            "data_retries": dict(self.retries),
        }
