"""A video whose AVI header overstates its frame count: every backend's decodable count."""

from __future__ import annotations

import io
import struct
import time

import av
import numpy as np
import pytest

from vjepa.data.backends import available_backends
from vjepa.data.decode import open_video
from vjepa.data.framecount import decodable_frames, frame_counts

FRAMES, CLAIMED = 48, 200


def _avi(n: int = FRAMES, w: int = 64, h: int = 48) -> bytes:
    """An MPEG-4 Part 2 AVI of n frames (a keyframe every 12), each frame different."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = 12
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)  # [H, W, 3]
            img[:, : (i * w) // n] = 255
            img[..., 1] = i * 5
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _overstate(data: bytes, frames: int) -> bytes:
    """Patch the AVI main header's dwTotalFrames and the video stream header's dwLength."""
    b = bytearray(data)
    avih = b.find(b"avih")
    struct.pack_into("<I", b, avih + 8 + 16, frames)  # after 'avih', size; 5th DWORD
    strh = b.find(b"strh")
    assert b[strh + 8 : strh + 12] == b"vids"
    struct.pack_into("<I", b, strh + 8 + 32, frames)  # 9th DWORD of AVISTREAMHEADER
    return bytes(b)


@pytest.fixture(scope="module")
def lying() -> bytes:
    return _overstate(_avi(), CLAIMED)


def test_pyav_reports_the_header_and_the_search_finds_the_truth(lying: bytes) -> None:
    with open_video(lying, "pyav") as reader:
        assert reader.num_frames == CLAIMED  # the lie reaches PyAV
    t0 = time.perf_counter()
    counts = frame_counts(lying, "pyav")
    seconds = time.perf_counter() - t0
    print(
        f"\npyav: header {counts.reported}, decodable {counts.decodable}, "
        f"{counts.probes} probes, {seconds * 1e3:.0f} ms"
    )
    assert (counts.reported, counts.decodable) == (CLAIMED, FRAMES) and counts.lies
    assert counts.probes <= 2 + int(np.ceil(np.log2(CLAIMED)))
    with open_video(lying, "pyav") as reader:  # the last counted frame really decodes
        assert reader.get_frames([FRAMES - 1]).shape == (1, 48, 64, 3)


@pytest.mark.parametrize("backend", ["torchcodec", "decord", "auto"])
def test_other_backends_agree(lying: bytes, backend: str) -> None:
    if backend != "auto" and backend not in available_backends():
        pytest.skip(f"{backend} is not usable here")
    assert decodable_frames(lying, backend) == FRAMES


def test_an_honest_header_costs_one_probe() -> None:
    counts = frame_counts(_avi(), "pyav")
    assert counts == type(counts)(reported=FRAMES, decodable=FRAMES, probes=1)
    assert not counts.lies


@pytest.mark.parametrize(
    "backend", ["pyav", *[b for b in ("torchcodec", "decord") if b in available_backends()]]
)
def test_the_writer_stores_the_decodable_count_and_the_loader_keeps_within_it(
    tmp_path, lying: bytes, backend: str
) -> None:
    import json
    import tarfile
    from dataclasses import replace

    from vjepa.config import DataConfig
    from vjepa.data.formats import VideoItem
    from vjepa.data.loader import make_eval_loader
    from vjepa.data.writer import write_shards

    (tmp_path / "tree.avi").write_bytes(lying)
    item = VideoItem(path=str(tmp_path / "tree.avi"), label=0, label_name="tree")
    write_shards([item], tmp_path / "shards", label_names=["tree"], progress=False)
    (shard,) = sorted((tmp_path / "shards").glob("*.tar"))
    with tarfile.open(shard) as tar:
        meta = json.loads(next(tar.extractfile(m) for m in tar if m.name.endswith(".json")).read())
    assert meta["num_frames"] == FRAMES
    assert meta.get("header_frames", CLAIMED) == CLAIMED
    # clips spread over the whole video: over the header's 200 frames most would not decode
    cfg = replace(DataConfig(), decoder=backend, frames_per_clip=8, frame_step=2, crop_size=32)
    batches = list(
        make_eval_loader(str(shard), data_cfg=cfg, num_clips=4, batch_size=1, num_workers=0)
    )
    assert len(batches) == 1 and batches[0]["video"].shape[:2] == (1, 4)


def test_bench_data_reports_the_disagreement_instead_of_crashing(tmp_path, lying: bytes) -> None:
    import importlib.util
    from dataclasses import replace
    from pathlib import Path

    import webdataset as wds

    from vjepa.config import DataConfig

    path = Path(__file__).resolve().parents[1] / "tools" / "bench_data.py"
    spec = importlib.util.spec_from_file_location("bench_data", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    shard = tmp_path / "lying-000000.tar"
    with wds.TarWriter(str(shard)) as sink:
        sink.write({"__key__": "tree", "mp4": lying, "json": b'{"label": 0}'})
    cfg = replace(DataConfig(), frames_per_clip=8, frame_step=4, crop_size=32, num_clips=2)
    backends = ["pyav", *[b for b in ("torchcodec", "decord") if b in available_backends()]]
    table = bench.decoder_table([str(shard)], cfg, backends, clips=2, seed=0)
    found = table["pyav"]["frame_count_disagreements"]["tree"]
    assert found["pyav_reported"] == CLAIMED and found["pyav_decodable"] == FRAMES
    assert table["pyav"]["clips"] >= 2
