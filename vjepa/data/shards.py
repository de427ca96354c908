"""Shard URLs: expansion of a user's spec and the split across nodes and loader workers.

A spec is one or more parts separated by ``::`` or ``,``; each part is

- a local folder (every ``*.tar`` in it, sorted),
- a glob (``/data/k400/train-*.tar``),
- a brace pattern (``/data/train-{000000..000099}.tar``, also inside URLs),
- a ``pipe:`` command whose stdout is a tar stream (``pipe:cat a.tar``),
- an ``http(s)://`` URL or an ``s3://bucket/key`` URL, read with retries and resumed
  transfers by vjepa.data.remote (s3 through boto3; ``data.retry``),
- a ``gs://bucket/key`` URL, streamed as ``pipe:gsutil cat gs://bucket/key``.

Splitting: :func:`split_slots` gives each (rank, worker) slot a disjoint share of the shards so
that an epoch covers every shard exactly once; with fewer shards than slots the split moves to
the sample level (see :func:`slot_plan`) so no worker - and therefore no rank - starves.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import braceexpand

from vjepa.errors import UsageError


class ShardSpecError(UsageError):
    """A shard spec that expands to nothing or names missing local files."""


def _is_remote(url: str) -> bool:
    return url.startswith(("pipe:", "http://", "https://", "s3://", "gs://"))


def _to_gopen(url: str) -> str:
    """URL in a form the shard readers open: vjepa.data.remote reads http(s):// and s3://
    itself, webdataset's gopen the rest (gs:// through the gsutil CLI)."""
    if url.startswith("gs://"):
        return f"pipe:gsutil cat {url}"
    return url


def _split_parts(spec: str) -> list[str]:
    parts: list[str] = []
    for chunk in spec.split("::"):
        # Commas also separate parts, except inside a brace pattern ({a,b}) or a pipe command.
        if chunk.startswith("pipe:") or "{" in chunk:
            parts.append(chunk)
        else:
            parts.extend(chunk.split(","))
    return [p.strip() for p in parts if p.strip()]


def _expand_local(part: str) -> list[str]:
    path = Path(part).expanduser()
    if path.is_dir():
        found = sorted(str(p) for p in path.glob("*.tar"))
        if not found:
            raise ShardSpecError(f"shard folder {part} holds no *.tar files")
        return found
    if glob.has_magic(part):
        found = sorted(glob.glob(os.path.expanduser(part)))
        if not found:
            raise ShardSpecError(f"shard pattern {part} matches no files")
        return found
    if not path.is_file():
        raise ShardSpecError(f"shard file not found: {part}")
    return [str(path)]


def expand_urls(spec: str) -> list[str]:
    """The ordered list of shard URLs a spec names; raises :class:`ShardSpecError` if none."""
    if not spec or not spec.strip():
        raise ShardSpecError("empty shard spec (set data.shards)")
    urls: list[str] = []
    for part in _split_parts(spec):
        if _is_remote(part):
            urls.extend(_to_gopen(u) for u in braceexpand.braceexpand(part))
            continue
        for item in braceexpand.braceexpand(part):
            urls.extend(_expand_local(item))
    if not urls:
        raise ShardSpecError(f"shard spec {spec!r} names no shards")
    return urls


@dataclass(frozen=True)
class SlotPlan:
    """What one (rank, worker) slot reads: ``urls``, keeping sample i when i % stride == offset."""

    urls: list[str]
    stride: int
    offset: int


def slot_plan(
    urls: list[str], *, rank: int, world_size: int, worker: int, num_workers: int
) -> SlotPlan:
    """Disjoint, complete split of ``urls`` over ``world_size * num_workers`` slots.

    Slot ``rank * num_workers + worker`` takes every S-th shard when there are at least S
    shards (shard-level split). With fewer shards than slots every slot reads all shards and
    keeps every S-th sample (sample-level split), so each worker still gets data.
    """
    if not 0 <= rank < world_size or not 0 <= worker < num_workers:
        raise ValueError(f"bad slot: rank {rank}/{world_size}, worker {worker}/{num_workers}")
    slots = world_size * num_workers
    slot = rank * num_workers + worker
    if len(urls) >= slots:
        return SlotPlan(urls=urls[slot::slots], stride=1, offset=0)
    return SlotPlan(urls=list(urls), stride=slots, offset=slot)
