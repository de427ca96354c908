"""A real HTTP server on 127.0.0.1 that misbehaves on purpose: the faults of issue #26.

Every ``every_503``-th request is answered 503, every ``every_cut``-th transfer is cut
half-way; ``Range: bytes=N-`` is honoured (206). Used by the remote-shard tests and the
end-to-end training runs over http://.

    faults = Faults(every_503=5, every_cut=3)
    for base in serve(files.get, faults):   # base: http://127.0.0.1:PORT
        ...                                 # the server stops after the loop body
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Faults:
    """Every ``every_503``-th request answered 503; every ``every_cut``-th transfer cut half-way.

    ``doomed``: paths whose first transfer is cut half-way and every later request gets 503.
    """

    def __init__(self, every_503: int = 5, every_cut: int = 3, doomed: tuple[str, ...] = ()):
        self.every_503, self.every_cut, self.doomed = every_503, every_cut, set(doomed)
        self.lock = threading.Lock()
        self.requests = self.transfers = self.n503 = self.cuts = self.n404 = 0
        self.seen: set[str] = set()

    def decide(self, path: str) -> str:
        """'503', 'cut' or 'ok' for the next request of ``path``."""
        with self.lock:
            self.requests += 1
            if path in self.doomed:
                first = path not in self.seen
                self.seen.add(path)
                return "cut" if first else "503"
            if self.every_503 and self.requests % self.every_503 == 0:
                return "503"
            self.transfers += 1
            if self.every_cut and self.transfers % self.every_cut == 0:
                return "cut"
            return "ok"


def serve(fetch: Callable[[str], bytes | None], faults: Faults) -> Iterator[str]:
    """Run a faulty HTTP server on 127.0.0.1 (free port); yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            body = fetch(self.path)
            if body is None:
                with faults.lock:
                    faults.n404 += 1
                self.send_error(404)
                return
            what = faults.decide(self.path)
            if what == "503":
                with faults.lock:
                    faults.n503 += 1
                self.send_error(503)
                return
            start = 0
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if m:
                start = int(m.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if what == "cut":
                with faults.lock:
                    faults.cuts += 1
                self.wfile.write(part[: len(part) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(part)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def folder_files(folder: Path) -> Callable[[str], bytes | None]:
    """``fetch`` for :func:`serve`: ``/name`` -> the bytes of ``folder/name`` (None: 404)."""

    def fetch(path: str) -> bytes | None:
        file = folder / path.lstrip("/")
        return file.read_bytes() if file.is_file() and file.parent == folder else None

    return fetch


# ----------------------------------------------------------------------------------------
# S3: moto's server on 127.0.0.1 (callers importorskip boto3 and moto.server first)
# ----------------------------------------------------------------------------------------


def s3_client(endpoint: str):
    """A boto3 S3 client of ``endpoint`` with moto's test credentials."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def moto_s3(objects: dict[str, bytes], port: int) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1:``port`` holding ``objects`` (key -> bytes) in
    ``s3://bucket/``; yields its endpoint URL, then stops it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket="bucket")
        for key, body in objects.items():
            s3.put_object(Bucket="bucket", Key=key, Body=body)
        yield endpoint
    finally:
        server.stop()


def s3_fetch(endpoint: str) -> Callable[[str], bytes | None]:
    """``fetch`` for :func:`serve` in front of an S3 API: the API answers, the proxy adds the
    faults (path-style ``/bucket/key`` requests; None: 404)."""
    s3 = s3_client(endpoint)

    def fetch(path: str) -> bytes | None:
        bucket, _, key = path.split("?")[0].lstrip("/").partition("/")
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    return fetch
