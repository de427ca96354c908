"""Shards streamed from somewhere other than a local path: a loopback HTTP server and pipe:."""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_loader import cfg_for, write_shards

from vjepa.data.loader import make_eval_loader


def _keys_and_frames(spec: str, root: Path) -> tuple[list[str], list]:
    keys, videos = [], []
    for batch in make_eval_loader(spec, data_cfg=cfg_for(root), batch_size=3):
        keys += batch["key"]
        videos.append(batch["video"])
    return keys, videos


@pytest.fixture
def http_root(tmp_path):
    """A loopback HTTP server over tmp_path (127.0.0.1, stopped after the test)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset streams http via curl")
def test_http_shards_equal_local_shards(http_root):
    root, url = http_root
    labels = write_shards(root / "shards", num_shards=2, per_shard=4)
    local_keys, local_videos = _keys_and_frames(str(root / "shards"), root / "shards")
    http_spec = f"{url}/shards/train-{{000000..000001}}.tar"
    http_keys, http_videos = _keys_and_frames(http_spec, root / "shards")
    assert sorted(http_keys) == sorted(labels) and http_keys == local_keys
    assert all((a == b).all() for a, b in zip(local_videos, http_videos))


def test_pipe_shards_equal_local_shards(tmp_path):
    labels = write_shards(tmp_path / "shards", num_shards=2, per_shard=3)
    local_keys, local_videos = _keys_and_frames(str(tmp_path / "shards"), tmp_path / "shards")
    pipe_spec = f"pipe:cat {tmp_path}/shards/train-{{000000..000001}}.tar"
    pipe_keys, pipe_videos = _keys_and_frames(pipe_spec, tmp_path / "shards")
    assert sorted(pipe_keys) == sorted(labels) and pipe_keys == local_keys
    assert all((a == b).all() for a, b in zip(local_videos, pipe_videos))
