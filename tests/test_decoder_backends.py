"""The decoder backends (decord, torchcodec, PyAV) on real video bytes, and ``auto``.

Same frames from every backend, a per-sample fallback that the loader counts, decord never
imported unless it decodes (also with decord hidden), and no C++ chatter for corrupt files.
A backend that cannot run here (e.g. torchcodec without the FFmpeg libraries) is skipped with
the reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from videos import make_frames, make_mp4

from vjepa.config import ConfigError, DataConfig
from vjepa.data import backends, decode
from vjepa.data.backends import BACKENDS, available_backends, backend_chain
from vjepa.data.decode import DecodeError, open_video
from vjepa.data.encode import encode_frames
from vjepa.data.loader import make_eval_loader

ROOT = Path(__file__).resolve().parents[1]
USABLE = available_backends()
# container format, codec: the test videos every backend must agree on
FORMATS = {
    "mp4": ("mp4", "libx264"),
    # H.264 in Matroska tests the container (VP8 is the webm entry).
    "mkv": ("matroska", "libx264"),
    "webm": ("webm", "libvpx"),
    "avi": ("avi", "mpeg4"),
    "flv": ("flv", "flv"),
}
N, SIZE = 40, (64, 48)


def needs(*backends: str):
    missing = [b for b in backends if b not in USABLE]
    why = "; ".join(str(backends._why_unusable(b)) for b in missing)
    return pytest.mark.skipif(bool(missing), reason=f"backend not usable here: {why}")


_SOURCE = make_frames(N, SIZE).astype(np.int16)  # [N, H, W, 3]


def _nearest_source_frame(frame: np.ndarray) -> int:
    return int(np.abs(_SOURCE - frame.astype(np.int16)).mean(axis=(1, 2, 3)).argmin())


# Encoded when the module is collected, before any test has imported decord: decord's bundled
# FFmpeg, once in a process, breaks PyAV's libvpx encoder there (avcodec_open2 returns EINVAL).
_VIDEOS = {
    name: encode_frames(make_frames(N, SIZE), fps=8, fmt=fmt, codec=codec)
    for name, (fmt, codec) in FORMATS.items()
}


@pytest.fixture(scope="module")
def videos() -> dict[str, bytes]:
    return _VIDEOS


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_gives_the_same_frames(videos: dict[str, bytes], backend: str) -> None:
    if backend not in USABLE:
        pytest.skip(f"{backend}: {backends._why_unusable(backend)}")
    idx = [35, 2, 20, 21, 39, 2]  # unsorted, repeated, near both ends
    for name, data in videos.items():
        with open_video(data, "pyav") as ref_reader:
            ref = ref_reader.get_frames(idx).astype(int)
        with open_video(data, backend) as reader:
            assert reader.backend == backend
            meta = (reader.num_frames, reader.fps, reader.width, reader.height)
            assert meta == (N, 8.0, *SIZE), name
            got = reader.get_frames(idx)
        assert got.shape == (6, SIZE[1], SIZE[0], 3) and got.dtype == np.uint8
        # Same bitstream, same frames: only YUV -> RGB rounding may differ between libraries.
        assert np.abs(got.astype(int) - ref).max() <= 2, name
        # ... and each is the requested frame: closer to it than to any other source frame.
        nearest = [_nearest_source_frame(f) for f in got]
        assert nearest == idx, (name, nearest)
        np.testing.assert_array_equal(got[1], got[5])


def test_unknown_or_unusable_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.decoder='ffmpeg' is not one of auto"):
        backend_chain("ffmpeg")
    chain = backend_chain("auto", announce=False)
    assert chain[0] == USABLE[0] and sorted(chain) == sorted(USABLE)
    assert chain[1:2] == (("pyav",) if "pyav" in USABLE[1:] else ())  # most exact first


def _shard(path: Path, samples: dict[str, bytes]) -> None:
    with wds.TarWriter(str(path)) as tar:
        for key, data in samples.items():
            tar.write({"__key__": key, "mp4": data, "json": json.dumps({"label": 0}).encode()})


@needs("torchcodec", "pyav")
def test_auto_falls_back_per_sample_and_the_loader_counts_it(tmp_path: Path) -> None:
    # A real case: torchcodec's exact seek cannot decode this MPEG-TS file; PyAV can.
    frames = make_frames(N, SIZE)
    ts = encode_frames(frames, fps=8, fmt="mpegts", codec="libx264")
    with pytest.raises(DecodeError) as info, open_video(ts, "torchcodec") as reader:
        reader.get_frames([0, 20, 39])
    assert info.value.reason == "decode_error"
    with open_video(ts, "auto") as reader:
        got = reader.get_frames([0, 20, 39])
        assert reader.backend == "pyav" and reader.fallbacks == ["torchcodec_decode_error"]
    assert [_nearest_source_frame(f) for f in got] == [0, 20, 39]

    _shard(tmp_path / "s-000000.tar", {"a_ts": ts, "b_mp4": make_mp4(num_frames=N, size=SIZE)})
    # A clip spanning 32 frames: past the first few frames, which torchcodec does decode.
    cfg = DataConfig(shards=str(tmp_path), frames_per_clip=4, frame_step=8, crop_size=16)
    batches = list(make_eval_loader(str(tmp_path), data_cfg=cfg, batch_size=2))
    assert [b["key"] for b in batches] == [["a_ts", "b_mp4"]]
    assert batches[0]["data_errors"] == {}  # a fallback that works is not an error ...
    assert batches[0]["decoder_fallbacks"] == {"torchcodec_decode_error": 1}  # ... it is counted


@needs("decord", "pyav")
def test_decord_refuses_mpeg_ts_rather_than_misplace_its_frames() -> None:
    frames = make_frames(N, SIZE)
    ts = encode_frames(frames, fps=8, fmt="mpegts", codec="libx264")
    with pytest.raises(DecodeError) as info:
        open_video(ts, "decord")
    assert info.value.reason == "unsupported"
    # Without the guard decord returns e.g. frames [9, 30, 30] for [0, 20, 39].
    with decode._FallbackReader(ts, ("decord", "pyav")) as reader:
        got = reader.get_frames([0, 20, 39])
        assert reader.fallbacks == ["decord_unsupported"]
    assert [_nearest_source_frame(f) for f in got] == [0, 20, 39]


@needs("decord")
def test_decord_row_padding_is_a_counted_fallback(tmp_path: Path) -> None:
    # decord 0.6 cannot copy out 48-px-wide frames; the sample is decoded by PyAV instead.
    _shard(tmp_path / "s-000000.tar", {"w48": make_mp4(num_frames=12, size=(48, 40))})
    cfg = DataConfig(
        shards=str(tmp_path), frames_per_clip=4, frame_step=2, crop_size=16, decoder="decord"
    )
    (batch,) = make_eval_loader(str(tmp_path), data_cfg=cfg, batch_size=1)
    assert batch["video"].shape[0] == 1 and batch["data_errors"] == {}
    assert batch["decoder_fallbacks"] == {"decord_row_padding": 1}


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


# Runs in a fresh interpreter: decodes, probes, transcodes and loads a batch, then reports
# which backend modules got imported.
_DECODE_ALL = """
import json, sys, tempfile
from pathlib import Path
import webdataset as wds
from videos import make_mp4
from vjepa.config import ConfigError, DataConfig
from vjepa.data.decode import open_video, probe
from vjepa.data.encode import transcode
from vjepa.data.loader import make_eval_loader

BACKEND = {backend!r}
mp4 = make_mp4(num_frames=40, size=(64, 48))
out = {{}}
with open_video(mp4, BACKEND) as r:
    out["backend"] = r.backend
    out["frames"] = r.get_frames([0, 39]).shape[0]
with open_video(mp4, BACKEND) as r:  # a second open: no second announcement
    r.get_frames([5])
out["probe"] = probe(mp4, BACKEND)["num_frames"]
out["transcode"] = probe(transcode(mp4, short_side=32), BACKEND)["width"]
root = Path(tempfile.mkdtemp())
with wds.TarWriter(str(root / "s-000000.tar")) as tar:
    tar.write({{"__key__": "k", "mp4": mp4, "json": b'{{"label": 1}}'}})
cfg = DataConfig(shards=str(root), frames_per_clip=4, frame_step=2, crop_size=16, decoder=BACKEND)
out["batch"] = list(next(iter(make_eval_loader(str(root), data_cfg=cfg, batch_size=1)))["video"].shape)
out["imported"] = sorted(m for m in ("decord", "torchcodec", "av") if m in sys.modules)
try:
    open_video(mp4, "decord")
    out["explicit_decord"] = "opened"
except ConfigError as err:
    out["explicit_decord"] = str(err)
print(json.dumps(out))
"""

# A meta-path finder that makes ``import decord`` fail as if it were not installed.
_HIDE_DECORD = """
import importlib.abc, sys
class _NoDecord(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "decord" or name.startswith("decord."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoDecord())
"""


def test_auto_without_decord_decodes_and_never_imports_it() -> None:
    proc = _run(_HIDE_DECORD + _DECODE_ALL.format(backend="auto"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    expected = next(b for b in ("torchcodec", "pyav") if b in USABLE)
    assert out["backend"] == expected and out["frames"] == 2 and out["probe"] == 40
    assert out["transcode"] == 42 and out["batch"] == [1, 1, 3, 4, 16, 16]  # 64x48 -> 42x32
    assert out["explicit_decord"].startswith("data.decoder=decord: decord is not installed")
    assert "decord" not in out["imported"]
    announced = [ln for ln in proc.stderr.splitlines() if ln.startswith("vjepa: video decoder")]
    assert len(announced) == 1, proc.stderr  # once per process
    assert announced[0].startswith(f"vjepa: video decoder {expected} (data.decoder=auto")
    assert "decord" not in announced[0]


@needs("decord")
def test_other_backends_never_import_decord_and_decord_is_quiet_on_bad_files() -> None:
    backend = "torchcodec" if "torchcodec" in USABLE else "pyav"
    bad = """
import io
import decord
from vjepa.data.decode import DecodeError
garbage = bytes(range(256)) * 20
for data in (garbage, mp4[: len(mp4) // 2]):
    try:
        open_video(data, "decord")
    except DecodeError as err:
        print("reason", err.reason, file=sys.stderr, flush=True)
print("CONTROL", file=sys.stderr, flush=True)
try:  # decord itself, unsilenced: proves that this stderr capture sees its C++ line
    decord.VideoReader(io.BytesIO(garbage))
except Exception:
    pass
"""
    proc = _run(_DECODE_ALL.format(backend=backend) + bad)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["backend"] == backend and out["imported"].count("decord") == 0
    assert out["explicit_decord"] == "opened"  # decord is installed: named, it is used
    ours, control = proc.stderr.split("CONTROL")
    assert "reason not_video" in ours and "reason truncated" in ours
    assert "ERROR opening" not in ours  # silenced at the file-descriptor level ...
    assert "ERROR opening" in control  # ... which is where decord writes it
    announced = [ln for ln in ours.splitlines() if ln.startswith("vjepa: video decoder")]
    assert announced == [
        f"vjepa: video decoder {backend} (data.decoder={backend})",
        "vjepa: video decoder decord (data.decoder=decord)",
    ]


def test_only_decode_and_encode_import_a_backend() -> None:
    # The rule the data layer keeps: one place reads video, one writes it.
    pattern = re.compile(r"^\s*(import|from)\s+(av|decord|torchcodec)\b", re.MULTILINE)
    importers = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "vjepa").rglob("*.py")
        if pattern.search(p.read_text())
    )
    assert importers == ["vjepa/data/decode.py", "vjepa/data/encode.py"]
