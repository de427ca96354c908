"""Shard streams that survive the network: bounded retries, resumed transfers, counted losses.

Every shard the loaders read (pretraining, probes, feature extraction, trajectories,
``vjepa shards --check``) goes through :func:`shard_samples` or :func:`open_shard`; remote
ones through :class:`ResumableStream`, with the policy of ``data.retry``
(:class:`vjepa.config.RetryConfig`):

- **open**: a failed open (HTTP 5xx / 408 / 429, connection refused or reset, timeout, S3
  throttling) is retried up to ``tries`` times with exponential backoff (``backoff_s *
  2**k``, at most ``backoff_max_s``); a permanent answer (HTTP 4xx, S3 NoSuchKey /
  NoSuchBucket / AccessDenied, no credentials) is not retried.
- **transfer**: a transfer that breaks or ends before the object's size (Content-Length /
  Content-Range) is resumed from the bytes already delivered with an HTTP ``Range`` request
  (S3: ``GetObject(Range=...)``); a server that ignores Range is re-read and the delivered
  bytes skipped. Each stall gets ``tries`` attempts; any progress resets the count, so the
  total is bounded by the object's size.
- the recovered faults are counted by kind (``open``, ``resume``) in the error counter's
  ``retries`` (the loaders put them in every batch as ``data_retries``; the training loop
  writes them to metrics.jsonl).
- after the tries, ``on_failure: skip`` skips the shard's remaining samples and counts the
  shard once by reason, ``shard_unreachable`` (nothing could be read) or ``shard_truncated``
  (cut for good), through the data-error counter (:class:`vjepa.data.errors.DataErrors`); a
  sample cut in the middle is dropped whole, never delivered half. ``on_failure: stop``
  raises :class:`ShardFailedError` instead (one line naming the URL, exit 2).
- when ``give_up_after`` shards in a row fail for one and the same cause before any shard
  of the stream was read (no credentials, wrong bucket, no network),
  :class:`TransportError` (a UsageError: one line, exit 2) carries that cause.

Transports: ``http(s)://`` natively with urllib (no curl); ``s3://`` with boto3, an optional
dependency (``pip install boto3``, or the ``s3`` extra); the endpoint and credentials come
from boto3's usual places (``AWS_ENDPOINT_URL_S3``, ``AWS_PROFILE``, ``~/.aws``, instance
roles). boto3 rather than ``pipe:aws s3 cp``: a ranged GetObject can resume a cut transfer,
errors arrive as typed codes (permanent or not), and no CLI must be installed on every node.
boto3's own retries are turned off so this module's policy is the only one. Anything else
(local files, ``pipe:`` commands, ``gs://`` as ``pipe:gsutil cat``) opens through
webdataset's ``gopen`` unchanged.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, BinaryIO, Protocol

from webdataset.gopen import gopen
from webdataset.handlers import reraise_exception
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from vjepa.config import RetryConfig
from vjepa.errors import UsageError

log = logging.getLogger("vjepa.data")


class ErrorCounter(Protocol):
    """What this module needs of :class:`vjepa.data.errors.DataErrors`."""

    retries: dict[str, int]
    """Recovered faults by kind (``open``, ``resume``), updated as they happen."""

    def count(self, reason: str, key: str = "?", err: BaseException | str | None = None) -> None:
        """Count one skipped item under ``reason``."""


def backoff(policy: RetryConfig, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): ``backoff_s * 2**(retry-1)``,
    at most ``backoff_max_s`` (0.5, 1, 2 s for the defaults: 3.5 s of waiting per stall)."""
    return min(policy.backoff_max_s, policy.backoff_s * 2 ** (retry - 1))


class ShardError(Exception):
    """A shard given up on after the retries; ``reason`` is the counted reason."""

    reason = "shard_error"

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"{url}: {cause}")
        self.url = url
        self.cause = cause


class ShardUnreachable(ShardError):
    reason = "shard_unreachable"


class ShardTruncated(ShardError):
    reason = "shard_truncated"


class ShardFailedError(UsageError):
    """A shard that failed after its retries under ``data.retry.on_failure: stop``."""

    def __init__(self, err: ShardError) -> None:
        super().__init__(
            f"shard {err.url} failed after its retries: {err.cause} "
            "(data.retry.on_failure=stop; 'skip' counts such a shard and goes on)"
        )


class TransportError(UsageError):
    """Every shard tried failed for the same transport cause (credentials, bucket, network)."""

    def __init__(self, cause: str, urls: list[str]) -> None:
        more = f" and {len(urls) - 1} more" if len(urls) > 1 else ""
        super().__init__(f"cannot read shards ({urls[0]}{more}): {cause}")
        self.cause = cause


class _Cut(Exception):
    """A transfer that ended before the object's size."""


# ----------------------------------------------------------------------------------------
# Transports: open(url, offset) -> (raw stream from offset, total size or None)
# ----------------------------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _skip(raw: BinaryIO, n: int) -> None:
    """Read and drop ``n`` bytes (a server that ignored our Range header)."""
    while n > 0:
        chunk = raw.read(min(n, 1 << 20))
        if not chunk:
            raise _Cut(f"connection closed while skipping to byte {n}")
        n -= len(chunk)


def _http_open(url: str, offset: int, timeout: float) -> tuple[BinaryIO, int | None]:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    total: int | None = None
    if resp.status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            resp.close()
            raise _Cut(f"bad Content-Range {resp.headers.get('Content-Range')!r}")
        total = int(m.group(3)) if m.group(3) != "*" else None
    else:
        length = resp.headers.get("Content-Length")
        total = int(length) if length is not None else None
        if offset:
            _skip(resp, offset)
    return resp, total


_S3_CLIENT: dict[int, Any] = {}  # pid -> client: one per loader worker process


def _s3_client(timeout: float) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise UsageError("s3:// shards need boto3: pip install boto3") from None
    client = _S3_CLIENT.get(os.getpid())
    if client is None:
        config = Config(
            retries={"total_max_attempts": 1},  # ours are the retries
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        # A session of our own: boto3's default session caches the credentials it found first.
        client = boto3.session.Session().client("s3", config=config)
        _S3_CLIENT.clear()  # a forked worker must not reuse its parent's connections
        _S3_CLIENT[os.getpid()] = client
    return client


def _s3_open(url: str, offset: int, timeout: float) -> tuple[BinaryIO, int | None]:
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        raise UsageError(f"bad s3 URL {url!r}: expected s3://bucket/key")
    extra = {"Range": f"bytes={offset}-"} if offset else {}
    obj = _s3_client(timeout).get_object(Bucket=bucket, Key=key, **extra)
    total = obj.get("ContentLength")
    if offset:
        m = _CONTENT_RANGE.match(obj.get("ContentRange") or "")
        if not m:  # Range ignored: whole object
            _skip(obj["Body"], offset)
        else:
            total = int(m.group(3)) if m.group(3) != "*" else None
    return obj["Body"], total


_TRANSIENT_S3 = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "503", "500"}


def _classify(err: BaseException) -> tuple[bool, str]:
    """(transient, the transport's own one-line cause) of a failed open or read."""
    if isinstance(err, urllib.error.HTTPError):
        transient = err.code >= 500 or err.code in (408, 429)
        return transient, f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return True, str(err.reason)
    if isinstance(err, _Cut | socket.timeout | ConnectionError | http.client.HTTPException):
        return True, str(err) or type(err).__name__
    try:
        import botocore.exceptions as bx
    except ImportError:
        bx = None
    if bx is not None:
        if isinstance(err, bx.ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
            return code in _TRANSIENT_S3 or status >= 500, str(err)
        if isinstance(err, bx.NoCredentialsError | bx.PartialCredentialsError):
            return False, str(err)
        if isinstance(err, bx.BotoCoreError):
            # EndpointConnectionError, ReadTimeoutError, ResponseStreamingError,
            # IncompleteReadError, ...: the network, worth another try.
            return True, str(err)
    if isinstance(err, OSError):
        return True, str(err)
    return False, f"{type(err).__name__}: {err}"


# ----------------------------------------------------------------------------------------
# The resumable stream
# ----------------------------------------------------------------------------------------


class ResumableStream(io.RawIOBase):
    """A remote object read front to back, reopened from the current byte on failures.

    :meth:`connect` opens it (raises :class:`ShardUnreachable` after the tries);
    ``readinto`` raises :class:`ShardTruncated` when a stall outlasts the tries.
    ``retries``: failures retried so far, by kind (``open``: before any byte, ``resume``: a
    broken transfer reopened at its byte); pass a dict to count into it as they happen.
    """

    def __init__(
        self,
        url: str,
        policy: RetryConfig,
        *,
        opener: Callable[[str, int, float], tuple[BinaryIO, int | None]],
        sleep: Callable[[float], None] = time.sleep,
        retries: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.policy = policy
        self._opener = opener
        self._sleep = sleep
        self._raw: BinaryIO | None = None
        self.pos = 0
        self.total: int | None = None
        self.retries = retries if retries is not None else {}

    def readable(self) -> bool:
        return True

    def _reopen(self) -> None:
        self._raw, total = self._opener(self.url, self.pos, self.policy.timeout_s)
        if self.total is None:
            self.total = total

    def _drop_raw(self) -> None:
        if self._raw is not None:
            try:
                self._raw.close()
            except Exception as err:  # closing a broken connection; the data is what matters
                log.debug("closing %s: %s", self.url, err)
            self._raw = None

    def _attempt(self, action: Callable[[], int], fail: type[ShardError]) -> int:
        """Run ``action`` with the retry policy; a permanent cause or the last try raises."""
        tries = 0
        while True:
            try:
                return action()
            except Exception as err:
                if isinstance(err, UsageError):  # boto3 missing, bad URL: not the network
                    raise
                transient, cause = _classify(err)
                self._drop_raw()
                tries += 1
                if not transient or tries >= self.policy.tries:
                    raise fail(self.url, cause) from None
                kind = "open" if fail is ShardUnreachable else "resume"
                self.retries[kind] = self.retries.get(kind, 0) + 1
                log.debug("retrying %s at byte %d after: %s", self.url, self.pos, cause)
                self._sleep(backoff(self.policy, tries))

    def connect(self) -> ResumableStream:
        def open_first() -> int:
            self._reopen()
            return 0

        self._attempt(open_first, ShardUnreachable)
        return self

    def readinto(self, b: Any) -> int:
        if len(b) == 0 or (self.total is not None and self.pos >= self.total):
            return 0

        def read() -> int:
            if self._raw is None:
                self._reopen()
            n = self._raw.readinto(b)
            if not n and (self.total is None or self.pos < self.total):
                if self.total is None:
                    return 0  # no size known: a clean end is the end
                raise _Cut(f"transfer ended at byte {self.pos} of {self.total}")
            return n

        n = self._attempt(read, ShardTruncated)
        self.pos += n
        return n

    def close(self) -> None:
        self._drop_raw()
        super().close()


def remote_stream(
    url: str, policy: RetryConfig, retries: dict[str, int] | None = None
) -> ResumableStream | None:
    """A not yet connected :class:`ResumableStream` for http(s):// and s3://, else None."""
    if url.startswith(("http://", "https://")):
        return ResumableStream(url, policy, opener=_http_open, retries=retries)
    if url.startswith("s3://"):
        return ResumableStream(url, policy, opener=_s3_open, retries=retries)
    return None


def open_shard(url: str, policy: RetryConfig | None = None) -> BinaryIO:
    """An open, buffered stream of one shard; remote ones resumable (ShardUnreachable on failure)."""
    raw = remote_stream(url, policy or RetryConfig())
    if raw is None:
        return gopen(url, "rb")
    return io.BufferedReader(raw.connect(), buffer_size=1 << 20)


def _shard_members(stream: BinaryIO, url: str, errors: ErrorCounter) -> Iterator[dict]:
    """Samples ``{"__key__", "__url__", ext: bytes}`` of one tar stream, grouped by key as
    webdataset's ``group_by_keys`` does (suffixes lower-cased; a repeated member of a sample is
    counted as ``bad_shard`` and dropped). A sample whose members are cut short is not yielded
    (the ShardError propagates first)."""
    current: dict | None = None
    for member in tar_file_iterator(stream, handler=reraise_exception):
        prefix, suffix = base_plus_ext(member["fname"])
        if prefix is None:
            continue
        suffix = suffix.lower()
        if current is not None and current["__key__"] != prefix:
            yield current
            current = None
        if current is None:
            current = {"__key__": prefix, "__url__": url}
        if suffix in current:
            errors.count("bad_shard", prefix, f"{url}: duplicate member {member['fname']}")
            continue
        current[suffix] = member["data"]
    if current is not None:
        yield current


def _close(stream: Any, url: str) -> None:
    """Close a shard stream; a pipe that ends with an error status on close is only logged
    (its data, read or not, has been handled already)."""
    try:
        stream.close()
    except Exception as err:
        log.debug("closing %s: %s", url, err)


def shard_samples(
    urls: Iterable[str], errors: ErrorCounter, policy: RetryConfig | None = None
) -> Iterator[dict]:
    """Samples of the shards ``urls`` in order, as webdataset's ``tarfile_samples`` yields them.

    Unreadable shards are skipped and counted on ``errors`` (``shard_unreachable``,
    ``shard_truncated``; a corrupt tar or a failed ``pipe:`` as ``bad_shard``), or, with
    ``policy.on_failure == "stop"``, a remote one raises :class:`ShardFailedError`.
    ``errors.retries`` counts the recovered faults by kind (``open``, ``resume``). Raises
    :class:`TransportError` when ``policy.give_up_after`` shards in a row (or all of them, if
    fewer) fail for one cause before any shard was read. ``urls`` may be endless (resampled
    shards).
    """
    policy = policy or RetryConfig()
    limit = policy.give_up_after
    if isinstance(urls, Sized):
        limit = max(1, min(limit, len(urls)))
    read_any = False
    failed: list[tuple[str, str]] = []  # (url, cause) while nothing was read yet
    for url in urls:
        raw = remote_stream(url, policy, errors.retries)
        stream: BinaryIO | None = None
        try:
            if raw is None:
                stream = gopen(url, "rb")
            else:
                stream = io.BufferedReader(raw.connect(), buffer_size=1 << 20)
            for sample in _shard_members(stream, url, errors):
                read_any = True
                yield sample
            read_any = True
        except ShardError as err:
            if not read_any:
                failed.append((url, err.cause))
                last = failed[-limit:]
                if len(last) == limit and len({cause for _, cause in last}) == 1:
                    raise TransportError(last[0][1], [u for u, _ in failed]) from None
            if policy.on_failure == "stop":
                raise ShardFailedError(err) from None
            errors.count(err.reason, url, err.cause)
        except UsageError:  # boto3 missing, a bad s3 URL: the user's to fix, not a data error
            raise
        except Exception as err:  # a corrupt tar, a local file gone, a failed pipe: command
            errors.count("bad_shard", url, err)
        finally:
            if stream is not None:
                _close(stream, url)
            elif raw is not None:
                raw.close()
