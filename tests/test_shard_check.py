"""`shards --check` on real shards from the writer: corrupt, duplicate and short samples found."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from videos import make_mp4

from vjepa.data.check import check_shards, clip_span, format_check
from vjepa.data.formats import VideoItem
from vjepa.data.writer import write_shards


def _add_member(tar_path: Path, name: str, data: bytes) -> None:
    """Append one member to a finished (uncompressed) shard."""
    with tarfile.open(tar_path, "a") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """6 labelled videos (one a byte copy of another, one of 5 frames) in 2 shards, plus a
    corrupt sample (a cut mp4) and a sample without video appended to the last shard."""
    root = tmp_path_factory.mktemp("check")
    src = root / "src"
    items = []
    for i in range(5):
        p = src / f"v{i}.mp4"
        make_mp4(p, num_frames=24 + 2 * i, size=(64, 48), seed=i)
        items.append(VideoItem(str(p), i % 2, ["jump", "run"][i % 2]))
    shutil.copy(src / "v1.mp4", src / "dup.mp4")  # same bytes as v1: a duplicate
    items.append(VideoItem(str(src / "dup.mp4"), 1, "run"))
    make_mp4(src / "short.mp4", num_frames=5, size=(64, 48), seed=9)
    items.append(VideoItem(str(src / "short.mp4"), 0, "jump"))
    out = root / "shards"
    manifest = write_shards(
        items, out, max_count=4, label_names=["jump", "run", "swim"], progress=False
    )
    last = out / manifest["shards"][-1]["name"]
    good = (src / "v0.mp4").read_bytes()
    cut = good[: len(good) // 2]  # header intact, media data cut: opens, last frame fails
    _add_member(last, "zz_corrupt.json", json.dumps({"label": 0}).encode())
    _add_member(last, "zz_corrupt.mp4", cut)
    _add_member(last, "zz_garbage.mp4", b"\x00" * 3000)
    _add_member(last, "zz_novideo.json", b"{}")
    return out, manifest


def test_check_finds_every_problem(shard_set: tuple[Path, dict], tmp_path: Path) -> None:
    out, manifest = shard_set
    assert len(manifest["shards"]) == 2
    report = check_shards(str(out), min_frames=clip_span(8, 2), out=tmp_path)
    assert report["shards"] == 2
    assert report["samples"] == 7 + 3
    assert report["ok"] == 7
    bad = {b["key"]: b["reason"] for b in report["bad"]}
    assert set(bad) == {"zz_corrupt", "zz_garbage", "zz_novideo"}
    assert bad["zz_corrupt"] == "truncated"
    assert bad["zz_garbage"] == "not_video"
    assert bad["zz_novideo"] == "no_video"
    # the duplicate: the key of v1 and the key of dup share one hash
    assert len(report["duplicates"]) == 1
    assert sorted(k.split("_", 1)[1] for k in report["duplicates"][0]) == ["dup", "v1"]
    assert report["duplicate_samples"] == 1
    # 8 frames every 2 need 15 source frames: only the 5-frame clip is short
    assert clip_span(8, 2) == 15
    assert [(s["key"].split("_", 1)[1], s["num_frames"]) for s in report["too_short"]] == [
        ("short", 5)
    ]
    assert report["num_frames"]["min"] == 5 and report["num_frames"]["max"] == 32
    assert report["sizes"] == {"64x48": 7}
    assert report["fps"] == {"8.0": 7}
    lab = report["labels"]
    assert lab["counts"] == {"0": 4, "1": 3}  # v0 v2 v4 short / v1 v3 dup
    assert lab["num_classes"] == 3 and lab["missing_classes"] == [2]  # "swim" has no sample
    assert report["manifest_count"] == 7
    assert report["meta_mismatch"] == []
    written = json.loads((tmp_path / "check.json").read_text())
    assert written["bad_by_reason"] == {"no_video": 1, "not_video": 1, "truncated": 1}
    table = format_check(report)
    assert "10 (7 ok, 3 bad)" in table
    assert "1 below 15 frames" in table
    assert "zz_corrupt" in table and "DUP" in table


def test_full_decode_agrees_and_decodes_every_frame(shard_set: tuple[Path, dict]) -> None:
    out, _ = shard_set
    quick = check_shards(str(out / "shard-{000000..000001}.tar"))
    full = check_shards(str(out / "shard-{000000..000001}.tar"), full=True)
    assert full["ok"] == quick["ok"] == 7
    assert {b["key"] for b in full["bad"]} == {b["key"] for b in quick["bad"]}
    assert quick["frames_decoded"] == 2 * 7
    assert full["frames_decoded"] == sum([24, 26, 28, 30, 32, 26, 5])
    assert quick["too_short"] == [] and quick["min_frames"] is None


def test_truncated_shard_is_reported_not_raised(
    shard_set: tuple[Path, dict], tmp_path: Path
) -> None:
    out, manifest = shard_set
    first = out / manifest["shards"][0]["name"]
    data = first.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2 + 100])  # ends inside a member
    report = check_shards(str(cut))
    assert [p["reason"] for p in report["shard_problems"]] == ["bad_tar"]
    assert report["ok"] >= 1  # the samples before the cut are still checked
