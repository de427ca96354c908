"""Any video file: folder scans decide by suffix or content, every other file is listed with its
reason, and the loader takes any video member suffix (issue 13, "Any video file")."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image
from videos import make_frames

from vjepa.cli import main
from vjepa.config import DataConfig
from vjepa.data.encode import encode_frames
from vjepa.data.formats import read_folder, sniff_video
from vjepa.data.loader import make_eval_loader
from vjepa.data.writer import read_manifest

# name -> (container, codec, fps); MPEG-1/2 only take the standard frame rates.
GOOD = {
    "a.avi": ("avi", "mpeg4", 8),
    "b.mp4": ("mp4", "libx264", 8),
    "c.mpeg": ("mpeg", "mpeg1video", 25),
    "d.mkv": ("matroska", "libx264", 8),
    "e.webm": ("webm", "libvpx", 8),
    "f.mpg": ("mpeg", "mpeg2video", 25),
    "g.flv": ("flv", "flv", 8),
    "h.wmv": ("asf", "wmv2", 8),
    "sub/i.clip": ("avi", "mpeg4", 8),  # unknown suffix: taken by its content
}


def video_bytes(fmt: str, codec: str, fps: int, seed: int = 0) -> bytes:
    return encode_frames(make_frames(10, (64, 48), seed), fps=fps, fmt=fmt, codec=codec)


def wav_bytes() -> bytes:
    """A second of silence in a WAV file: a media file without a video stream."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 8000), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def make_folder(root: Path) -> dict[str, str]:
    """The good videos and the bad files; returns bad file -> expected skip reason."""
    for i, (name, (fmt, codec, fps)) in enumerate(GOOD.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(video_bytes(fmt, codec, fps, seed=i))
    png = io.BytesIO()
    Image.fromarray(make_frames(1, (64, 48))[0]).save(png, format="PNG")
    bad = {
        "notes.txt": (b"not a video\n" * 20, "not_video"),
        "list.txt": (b"down/down_001.mp4 0\n" * 100, "not_video"),  # FFmpeg: tty, 1 frame
        "still.png": (png.getvalue(), "not_video"),
        "audio.wav": (wav_bytes(), "not_video"),
        "empty.mp4": (b"", "empty"),
        "garbage.avi": (bytes(range(256)) * 8, "not_video"),
        "truncated.mkv": ((root / "d.mkv").read_bytes()[:600], "truncated"),
    }
    for name, (data, _) in bad.items():
        (root / name).write_bytes(data)
    return {name: reason for name, (_, reason) in bad.items()}


def test_sniff_decides_by_content(tmp_path: Path) -> None:
    make_folder(tmp_path)
    assert sniff_video(tmp_path / "sub/i.clip") is None
    assert "still image" in sniff_video(tmp_path / "still.png")
    assert "no video stream" in sniff_video(tmp_path / "audio.wav")
    assert "not a media file" in sniff_video(tmp_path / "notes.txt")
    assert "a text file" in sniff_video(tmp_path / "list.txt")  # FFmpeg's tty demuxer opens it
    listing = read_folder(tmp_path)
    assert {Path(i.path).name for i in listing.items} == {Path(n).name for n in GOOD} | {
        "empty.mp4",
        "garbage.avi",
        "truncated.mkv",
    }  # video suffixes are taken unopened; the writer's probe rejects the bad ones
    assert {s.source: s.reason for s in listing.skipped} == dict.fromkeys(
        ["audio.wav", "list.txt", "notes.txt", "still.png"], "not_video"
    )


def test_folder_of_any_container_gives_shards_of_every_good_video(tmp_path: Path, capsys) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    expected_skips = make_folder(src)
    assert main(["shards", str(src), "--out", str(out)]) == 0
    manifest = read_manifest(out)
    stored = []
    for shard in manifest["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    stored.append(json.loads(tar.extractfile(m).read())["source"])
    assert sorted(stored) == sorted(GOOD)
    assert {s["source"]: s["reason"] for s in manifest["skipped"]} == expected_skips
    # every file of the folder is either stored or listed with its reason
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert files == set(stored) | {s["source"] for s in manifest["skipped"]}
    assert all(s["detail"] for s in manifest["skipped"])
    assert "skipped 7" in capsys.readouterr().out
    # ... and the loader decodes every stored video
    cfg = DataConfig(frames_per_clip=4, frame_step=1, crop_size=32, num_workers=0)
    batches = list(make_eval_loader(str(out), data_cfg=cfg, batch_size=16))
    assert len(batches) == 1 and len(batches[0]["key"]) == len(GOOD)
    assert batches[0]["video"].shape == (len(GOOD), 1, 3, 4, 32, 32)
    assert batches[0]["data_errors"] == {}


def test_loader_takes_any_video_member_suffix(tmp_path: Path) -> None:
    members = {"mpeg": GOOD["c.mpeg"], "AVI": GOOD["a.avi"], "wmv": GOOD["h.wmv"]}
    members |= {"mxf": GOOD["b.mp4"], "m2ts": GOOD["d.mkv"]}  # decoders go by content
    with wds.TarWriter(str(tmp_path / "x-000000.tar")) as tar:
        for i, (ext, spec) in enumerate(members.items()):
            meta = json.dumps({"label": i}).encode()
            tar.write({"__key__": f"k{i}", ext: video_bytes(*spec), "json": meta})
    cfg = DataConfig(frames_per_clip=4, frame_step=1, crop_size=32, num_workers=0)
    batch = next(iter(make_eval_loader(str(tmp_path), data_cfg=cfg, batch_size=8)))
    assert batch["key"] == [f"k{i}" for i in range(5)]
    assert batch["label"].tolist() == list(range(5)) and batch["data_errors"] == {}
