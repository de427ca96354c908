"""Shard streams that survive the network: bounded retries, resumed transfers, counted losses.

webdataset opens ``http(s)://`` through ``curl`` and our ``s3://`` through ``pipe:aws s3 cp``;
neither retries a transfer cut half-way (curl exit 18), and a worker traceback hides the
transport's own message ("Unable to locate credentials"). Here every remote shard is read
through :class:`ResumableStream`:

- **open**: a failed open (HTTP 5xx / 408 / 429, connection refused or reset, timeout, S3
  throttling) is retried up to ``RetryPolicy.tries`` times with exponential backoff
  (``base_s * 2**k``, at most ``max_s``); a permanent answer (HTTP 4xx, S3 NoSuchKey /
  NoSuchBucket / AccessDenied, no credentials) is not retried.
- **transfer**: a transfer that breaks or ends before the object's size (Content-Length /
  Content-Range) is resumed from the bytes already delivered with an HTTP ``Range`` request
  (S3: ``GetObject(Range=...)``); a server that ignores Range is re-read and the delivered
  bytes skipped. Each stall gets ``tries`` attempts; any progress resets the count, so the
  total is bounded by the object's size.
- after the tries the shard's remaining samples are skipped and counted once per shard by
  reason, ``shard_unreachable`` (nothing could be read) or ``shard_truncated`` (cut for good),
  through the data-error counter (:class:`vjepa.data.errors.DataErrors`); a sample cut in
  the middle is dropped whole, never delivered half.
- when ``give_up_after`` shards in a row fail for one and the same cause before any shard
  of the stream was read (no credentials, wrong bucket, no network),
  :class:`TransportError` (a UsageError: one line, exit 2) carries that cause.

Transports: ``http(s)://`` natively with urllib (no curl); ``s3://`` with boto3, an optional
dependency (``pip install boto3``); the endpoint and credentials come from boto3's usual
places (``AWS_ENDPOINT_URL_S3``, ``AWS_PROFILE``, ``~/.aws``, instance roles). boto3's own
retries are turned off so this module's policy is the only one. Anything else (local files,
``pipe:``) opens through webdataset's ``gopen`` unchanged.
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
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from webdataset.gopen import gopen
from webdataset.handlers import reraise_exception
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from vjepa.data.shards import expand_urls
from vjepa.errors import UsageError

log = logging.getLogger("vjepa.data")


class ErrorCounter(Protocol):
    """What this module needs of :class:`vjepa.data.errors.DataErrors`."""

    def count(self, reason: str, key: str = "?", err: BaseException | str | None = None) -> None:
        """Count one skipped item under ``reason``."""

    def webdataset_handler(self, exn: Exception) -> bool:
        """Count an unreadable shard or tar member; True = go on."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of one shard: ``tries`` attempts per stall, backoff between them.

    The k-th retry waits ``min(max_s, base_s * 2**(k-1))`` seconds (0.5, 1, 2 s for the
    defaults: at most 3.5 s of waiting per stall). ``timeout_s``: connect / read timeout of
    one request. ``give_up_after``: that many shards failing for one cause before any
    shard was read stops the stream with :class:`TransportError`.
    """

    tries: int = 4
    base_s: float = 0.5
    max_s: float = 8.0
    timeout_s: float = 30.0
    give_up_after: int = 3

    def __post_init__(self) -> None:
        if self.tries < 1 or self.base_s < 0 or self.max_s < self.base_s or self.timeout_s <= 0:
            raise ValueError(f"bad retry policy {self}")
        if self.give_up_after < 1:
            raise ValueError(f"give_up_after must be >= 1, got {self.give_up_after}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return min(self.max_s, self.base_s * 2 ** (retry - 1))


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
    ``retries``: failures retried so far, by kind (``open``: before any byte, ``transfer``).
    """

    def __init__(
        self,
        url: str,
        policy: RetryPolicy,
        *,
        opener: Callable[[str, int, float], tuple[BinaryIO, int | None]],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.url = url
        self.policy = policy
        self._opener = opener
        self._sleep = sleep
        self._raw: BinaryIO | None = None
        self.pos = 0
        self.total: int | None = None
        self.retries = {"open": 0, "transfer": 0}

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
                self.retries["open" if fail is ShardUnreachable else "transfer"] += 1
                log.debug("retrying %s at byte %d after: %s", self.url, self.pos, cause)
                self._sleep(self.policy.delay(tries))

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


def _native(url: str) -> str:
    """The URL itself for the transports read here (undoing shards.py's ``pipe:aws`` form)."""
    m = re.fullmatch(r"pipe:aws s3 cp (s3://\S+) -", url)
    return m.group(1) if m else url


def expand_remote(spec: str) -> list[str]:
    """:func:`vjepa.data.shards.expand_urls`, with ``s3://`` URLs kept as such (read by boto3)."""
    return [_native(u) for u in expand_urls(spec)]


def remote_stream(url: str, policy: RetryPolicy) -> ResumableStream | None:
    """A not yet connected :class:`ResumableStream` for http(s):// and s3://, else None."""
    if url.startswith(("http://", "https://")):
        return ResumableStream(url, policy, opener=_http_open)
    if url.startswith("s3://"):
        return ResumableStream(url, policy, opener=_s3_open)
    return None


def open_shard(url: str, policy: RetryPolicy) -> BinaryIO:
    """An open, buffered stream of one shard; remote ones resumable (ShardUnreachable on failure)."""
    raw = remote_stream(url, policy)
    if raw is None:
        return gopen(url, "rb")
    return io.BufferedReader(raw.connect(), buffer_size=1 << 20)


def _shard_members(stream: BinaryIO, url: str) -> Iterator[dict]:
    """Samples ``{"__key__", "__url__", ext: bytes}`` of one tar stream, grouped by key.

    A sample whose members are cut short is not yielded (the ShardError propagates first).
    """
    current: dict | None = None
    for member in tar_file_iterator(stream, handler=reraise_exception):
        prefix, suffix = base_plus_ext(member["fname"])
        if prefix is None:
            continue
        if current is not None and current["__key__"] != prefix:
            yield current
            current = None
        if current is None:
            current = {"__key__": prefix, "__url__": url}
        current[suffix.lower()] = member["data"]
    if current is not None:
        yield current


def shard_samples(
    urls: Iterable[str],
    errors: ErrorCounter,
    policy: RetryPolicy | None = None,
    *,
    retries: dict[str, int] | None = None,
) -> Iterator[dict]:
    """Samples of the shards ``urls`` in order, as webdataset's ``tarfile_samples`` yields them.

    Unreadable shards are skipped and counted on ``errors`` (``shard_unreachable``,
    ``shard_truncated``; a corrupt tar as ``bad_shard``). ``retries`` (optional) accumulates
    the recovered faults by kind (``open``, ``transfer``). Raises :class:`TransportError`
    when ``policy.give_up_after`` shards in a row (or all of them, if fewer) fail for one cause
    before any shard was read. ``urls`` may be endless (resampled shards).
    """
    policy = policy or RetryPolicy()
    limit = policy.give_up_after
    if isinstance(urls, Sized):
        limit = max(1, min(limit, len(urls)))
    read_any = False
    failed: list[tuple[str, str]] = []  # (url, cause) while nothing was read yet
    for url in urls:
        raw = remote_stream(url, policy)
        stream: BinaryIO | None = None
        try:
            if raw is None:
                stream = gopen(url, "rb")
            else:
                stream = io.BufferedReader(raw.connect(), buffer_size=1 << 20)
            for sample in _shard_members(stream, url):
                read_any = True
                yield sample
            read_any = True
        except ShardError as err:
            errors.count(err.reason, url, err.cause)
            if not read_any:
                failed.append((url, err.cause))
                last = failed[-limit:]
                if len(last) == limit and len({cause for _, cause in last}) == 1:
                    raise TransportError(last[0][1], [u for u, _ in failed]) from None
        except UsageError:  # boto3 missing, a bad s3 URL: the user's to fix, not a data error
            raise
        except Exception as err:  # a corrupt tar, a local file gone: the usual handler
            errors.webdataset_handler(err)
        finally:
            if raw is not None and retries is not None:
                for kind, n in raw.retries.items():
                    retries[kind] = retries.get(kind, 0) + n
            if stream is not None:
                stream.close()
            elif raw is not None:
                raw.close()
