"""Shards over a flaky network: vjepa.data.remote against real servers on 127.0.0.1.

A local HTTP server drops every third transfer half-way and answers every fifth request 503
(the setup of issue #26, where a run lost 38 samples to 24 faults); moto's S3 server stands
in for an object store, directly and behind the same faults.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator

import numpy as np
import pytest
from http_faults import Faults, s3_fetch, serve
from http_faults import moto_s3 as moto_s3_server
from train_utils import free_port

from vjepa.config import RetryConfig
from vjepa.data.errors import DataErrors
from vjepa.data.remote import ShardFailedError, TransportError, shard_samples
from vjepa.data.shards import expand_urls

FAST = RetryConfig(tries=4, backoff_s=0.01, backoff_max_s=0.05, timeout_s=10.0)
SHARDS, PER_SHARD = 24, 10


def _shard(index: int, n: int = PER_SHARD) -> tuple[bytes, dict[str, bytes]]:
    """A tar shard of n samples (``.mp4`` of 3-9 KB random bytes + ``.json``), and its mp4s."""
    rng = np.random.default_rng(index)
    buf, videos = io.BytesIO(), {}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(n):
            key = f"s{index:02d}_{i:03d}"
            videos[key] = rng.integers(0, 256, int(rng.integers(3000, 9000)), np.uint8).tobytes()
            for name, data in ((f"{key}.mp4", videos[key]), (f"{key}.json", b'{"label": 1}')):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), videos


@pytest.fixture(scope="module")
def corpus() -> tuple[dict[str, bytes], dict[str, bytes]]:
    shards, videos = {}, {}
    for i in range(SHARDS):
        shards[f"/data/shard-{i:06d}.tar"], v = _shard(i)
        videos.update(v)
    return shards, videos


def _read(urls: list[str], policy: RetryConfig = FAST):
    errors = DataErrors("test: ")
    got = {s["__key__"]: s for s in shard_samples(urls, errors, policy)}
    return got, errors, errors.retries


def test_flaky_http_server_loses_nothing(corpus) -> None:
    shards, videos = corpus
    faults = Faults(every_503=5, every_cut=3)
    for base in serve(shards.get, faults):
        urls = expand_urls(f"{base}/data/shard-{{000000..{SHARDS - 1:06d}}}.tar")
        got, errors, retries = _read(urls)
    injected = faults.n503 + faults.cuts
    lost = len(videos) - len(got)
    print(
        f"\nflaky http: {len(got)} delivered, {lost} lost, {injected} faults "
        f"({faults.n503} x 503, {faults.cuts} cuts), retries {retries}, errors {errors.counts}"
    )
    assert len(urls) == SHARDS and injected >= 15  # the faults really happened
    assert lost <= injected / 4
    assert lost == 0 and errors.total == 0
    assert all(got[k]["mp4"] == v and got[k]["json"] == b'{"label": 1}' for k, v in videos.items())
    assert (
        retries.get("open", 0) + retries.get("resume", 0) == injected
    )  # every fault seen and recovered


def test_a_shard_past_its_tries_is_skipped_and_counted(corpus) -> None:
    shards, videos = corpus
    doomed = "/data/shard-000003.tar"
    faults = Faults(every_503=0, every_cut=0, doomed=(doomed,))
    for base in serve(shards.get, faults):
        urls = [f"{base}/data/shard-{i:06d}.tar" for i in range(6)] + [f"{base}/data/gone.tar"]
        got, errors, retries = _read(urls)
    assert errors.counts == {"shard_truncated": 1, "shard_unreachable": 1}
    from_doomed = sorted(k for k in got if k.startswith("s03_"))
    assert 0 < len(from_doomed) < PER_SHARD  # the samples before the cut arrive, whole
    assert from_doomed == [f"s03_{i:03d}" for i in range(len(from_doomed))]
    assert all(got[k]["mp4"] == videos[k] and "json" in got[k] for k in got)
    assert len(got) == 5 * PER_SHARD + len(from_doomed)
    assert retries == {"resume": FAST.tries - 1}  # 3 resumes answered 503, then given up
    assert faults.requests == 5 + FAST.tries  # 5 whole shards, 1 + 3 tries of the doomed one
    assert faults.n404 == 1  # a 404 is permanent: asked once


def test_no_server_at_all_is_one_usage_error_with_the_cause() -> None:
    urls = [f"http://127.0.0.1:{free_port()}/shard-{i}.tar" for i in range(5)]
    with pytest.raises(TransportError) as info:
        _read(urls)
    message = str(info.value)
    assert "\n" not in message and "Connection refused" in message
    assert message.startswith(f"cannot read shards ({urls[0]} and 2 more)")


# ----------------------------------------------------------------------------------------
# S3: moto's server on 127.0.0.1
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_s3(corpus) -> Iterator[str]:
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    shards, _ = corpus
    objects = {
        f"prefix/shard-{i:06d}.tar": shards[f"/data/shard-{i:06d}.tar"] for i in range(SHARDS)
    }
    yield from moto_s3_server(objects, free_port())


@pytest.fixture
def aws_env(monkeypatch):
    import vjepa.data.remote as remote

    monkeypatch.setattr(remote, "_S3_CLIENT", {})  # a fresh client per test (env changes)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return monkeypatch


def test_s3_urls_as_users_write_them(moto_s3, corpus, aws_env) -> None:
    _, videos = corpus
    aws_env.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    aws_env.setenv("AWS_ACCESS_KEY_ID", "test")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "test")
    urls = expand_urls("s3://bucket/prefix/shard-{000000..000003}.tar")
    assert urls == [f"s3://bucket/prefix/shard-{i:06d}.tar" for i in range(4)]
    got, errors, _ = _read(urls)
    assert errors.total == 0 and len(got) == 4 * PER_SHARD
    assert all(got[k]["mp4"] == videos[k] for k in got)


def test_s3_through_the_same_faults(moto_s3, corpus, aws_env) -> None:
    _, videos = corpus
    aws_env.setenv("AWS_ACCESS_KEY_ID", "test")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "test")
    faults = Faults(every_503=5, every_cut=3)
    for proxy in serve(s3_fetch(moto_s3), faults):
        aws_env.setenv("AWS_ENDPOINT_URL_S3", proxy)
        urls = expand_urls(f"s3://bucket/prefix/shard-{{000000..{SHARDS - 1:06d}}}.tar")
        got, errors, retries = _read(urls)
    injected = faults.n503 + faults.cuts
    print(
        f"\nflaky s3: {len(got)} delivered, {len(videos) - len(got)} lost, {injected} faults "
        f"({faults.n503} x 503, {faults.cuts} cuts), retries {retries}, errors {errors.counts}"
    )
    assert injected >= 15 and errors.total == 0 and len(got) == len(videos)
    assert retries.get("open", 0) + retries.get("resume", 0) == injected
    assert all(got[k]["mp4"] == videos[k] for k in got)


def test_s3_without_credentials_is_one_line_with_the_cause(moto_s3, aws_env) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    aws_env.delenv("AWS_ACCESS_KEY_ID", raising=False)
    aws_env.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    urls = expand_urls("s3://bucket/prefix/shard-{000000..000003}.tar")
    with pytest.raises(TransportError) as info:
        _read(urls)
    assert str(info.value) == (
        "cannot read shards (s3://bucket/prefix/shard-000000.tar and 2 more): "
        "Unable to locate credentials"
    )


def test_s3_wrong_bucket_is_one_line_with_the_cause(moto_s3, aws_env) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    aws_env.setenv("AWS_ACCESS_KEY_ID", "test")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with pytest.raises(TransportError, match="NoSuchBucket") as info:
        _read(expand_urls("s3://nobucket/prefix/shard-{000000..000003}.tar"))
    assert "\n" not in str(info.value)


def test_json_members_are_what_was_written(corpus) -> None:
    shards, _ = corpus
    members = tarfile.open(fileobj=io.BytesIO(shards["/data/shard-000000.tar"])).getnames()
    assert len(members) == 2 * PER_SHARD
    assert json.loads(b'{"label": 1}') == {"label": 1}


def test_an_endless_shard_stream_stops_on_a_dead_network() -> None:
    port = free_port()
    endless = (f"http://127.0.0.1:{port}/shard-{i}.tar" for i in iter(int, 1))  # resampled
    with pytest.raises(TransportError, match="Connection refused"):
        for _ in shard_samples(endless, DataErrors(), FAST):
            pass


def test_on_failure_stop_names_the_shard_in_one_line(corpus) -> None:
    shards, _ = corpus
    doomed = "/data/shard-000002.tar"
    faults = Faults(every_503=0, every_cut=0, doomed=(doomed,))
    stop = RetryConfig(tries=3, backoff_s=0.01, backoff_max_s=0.05, on_failure="stop")
    for base in serve(shards.get, faults):
        urls = [f"{base}/data/shard-{i:06d}.tar" for i in range(4)]
        with pytest.raises(ShardFailedError) as info:
            _read(urls, stop)
    assert str(info.value) == (
        f"shard {base}{doomed} failed after its retries: HTTP 503 Service Unavailable "
        "(data.retry.on_failure=stop; 'skip' counts such a shard and goes on)"
    )
    assert faults.requests == 2 + 3  # two whole shards, then the doomed one's 3 tries


def test_local_shards_read_exactly_as_webdataset_reads_them(tmp_path) -> None:
    """The loaders' reader changed from webdataset's tarfile_samples: local shards must give
    the same samples in the same order (exact resume of older runs depends on it)."""
    from train_utils import make_shards
    from webdataset.tariterators import tarfile_samples

    urls = expand_urls(str(make_shards(tmp_path, per_class=3, per_shard=5)))
    ours = list(shard_samples(urls, DataErrors()))
    theirs = list(tarfile_samples({"url": u} for u in urls))
    assert len(urls) > 1 and len(ours) == 18
    assert [s["__key__"] for s in ours] == [s["__key__"] for s in theirs]
    assert ours == theirs  # every member's bytes, and __url__
