"""The shard writer on real tiny videos: contents, skips, determinism, bounds, re-encoding."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from videos import make_frames, make_mp4

from vjepa.cli import main as cli_main
from vjepa.data import writer
from vjepa.data.decode import open_video
from vjepa.data.formats import VideoItem, read_folder, read_source
from vjepa.data.writer import MANIFEST_NAME, read_manifest, write_shards


def _corpus(root: Path, n_per_class: int = 3) -> list[Path]:
    """``root/<class>/<class>_<i>.mp4`` for two classes, each video different."""
    paths = []
    for c, cls in enumerate(["jump", "run"]):
        for i in range(n_per_class):
            p = root / cls / f"{cls}_{i}.mp4"
            make_mp4(p, num_frames=8 + i, seed=10 * c + i)
            paths.append(p)
    return paths


def _read_back(out: Path) -> list[dict]:
    """All samples of the shards in manifest order, through plain webdataset."""
    manifest = read_manifest(out)
    urls = [str(out / s["name"]) for s in manifest["shards"]]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


def test_folder_to_shards_round_trip(tmp_path: Path) -> None:
    paths = _corpus(tmp_path / "src")
    listing = read_folder(tmp_path / "src", labels_from_folders=True)
    manifest = write_shards(
        listing.items,
        tmp_path / "out",
        label_names=listing.label_names,
        source_root=tmp_path / "src",
        progress=False,
        shuffle_seed=None,  # input order: compared file by file below
    )
    assert manifest["count"] == 6 and manifest["skipped"] == []
    assert manifest["label_names"] == ["jump", "run"] and manifest["num_classes"] == 2
    assert [s["name"] for s in manifest["shards"]] == ["shard-000000.tar"]
    assert manifest["shards"][0]["bytes"] == (tmp_path / "out/shard-000000.tar").stat().st_size
    samples = _read_back(tmp_path / "out")
    assert [s["__key__"] for s in samples] == [
        "000000_jump_0",
        "000001_jump_1",
        "000002_jump_2",
        "000003_run_0",
        "000004_run_1",
        "000005_run_2",
    ]
    for s, p in zip(samples, paths, strict=True):
        assert s["mp4"] == p.read_bytes()  # stored verbatim without re-encoding
        meta = json.loads(s["json"])
        assert meta["source"] == p.relative_to(tmp_path / "src").as_posix()
        assert meta["label_name"] == p.parent.name
        assert meta["label"] == ["jump", "run"].index(p.parent.name)
        assert (meta["width"], meta["height"], meta["fps"]) == (64, 48, 8.0)
        assert meta["num_frames"] == 8 + int(p.stem[-1])
        assert meta["duration"] == pytest.approx(meta["num_frames"] / 8)


def _plant_bad_inputs(src: Path) -> list[VideoItem]:
    good = make_mp4(src / "good.mp4", seed=3)
    (src / "empty.mp4").write_bytes(b"")
    (src / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (src / "text.mp4").write_text("this is not a video\n" * 20)
    (src / "folder.mp4").mkdir()
    names = ["good", "empty", "truncated", "text", "gone", "folder", "good"]
    return [VideoItem(str(src / f"{n}.mp4"), 0, "c") for n in names]


def test_bad_inputs_are_skipped_with_reasons(tmp_path: Path) -> None:
    src = tmp_path / "src"
    items = _plant_bad_inputs(src)
    manifest = write_shards(items, tmp_path / "out", source_root=src, progress=False)
    assert manifest["count"] == 2 and manifest["num_inputs"] == 7
    reasons = {s["source"]: s["reason"] for s in manifest["skipped"]}
    assert reasons == {
        "empty.mp4": "empty",
        "truncated.mp4": "truncated",
        "text.mp4": "not_video",
        "gone.mp4": "missing",
        "folder.mp4": "unreadable",
    }
    assert manifest["skipped_by_reason"] == {
        "empty": 1,
        "missing": 1,
        "not_video": 1,
        "truncated": 1,
        "unreadable": 1,
    }
    # Keys keep the input position, so a skipped input leaves a gap rather than renumbering.
    assert [s["__key__"] for s in _read_back(tmp_path / "out")] == ["000000_good", "000006_good"]
    assert json.loads((tmp_path / "out" / MANIFEST_NAME).read_text()) == manifest


def test_reader_skips_carry_into_manifest_and_summary(tmp_path: Path) -> None:
    csv_path = tmp_path / "k.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "a,have0000000,0,10,train\nb,lost0000000,0,10,train\n"
    )
    make_mp4(tmp_path / "train" / "have0000000_000000_000010.mp4")
    listing = read_source(csv_path, split="train")
    manifest = write_shards(
        listing.items,
        tmp_path / "out",
        label_names=listing.label_names,
        skipped=listing.skipped,
        progress=False,
    )
    assert manifest["count"] == 1 and manifest["skipped_by_reason"] == {"missing": 1}
    (sample,) = _read_back(tmp_path / "out")
    assert sample["__key__"] == "000000_have0000000_000000_000010"
    meta = json.loads(sample["json"])
    assert (meta["label"], meta["segment_start"], meta["segment_end"]) == (0, 0.0, 10.0)
    text = writer.format_summary(manifest)
    assert "wrote 1 samples in 1 shards" in text and "missing: 1" in text


def test_workers_do_not_change_the_output(tmp_path: Path) -> None:
    _corpus(tmp_path / "src", n_per_class=4)
    items = _plant_bad_inputs(tmp_path / "src") + read_folder(tmp_path / "src").items
    m1 = write_shards(items, tmp_path / "w1", max_count=3, progress=False)
    m2 = write_shards(items, tmp_path / "w2", max_count=3, workers=2, progress=False)
    assert m1 == m2 and m1["count"] == 2 + 1 + 8  # good twice, then the folder scan
    for s in m1["shards"]:
        assert (tmp_path / "w1" / s["name"]).read_bytes() == (
            tmp_path / "w2" / s["name"]
        ).read_bytes()


def test_shards_respect_count_and_size_limits(tmp_path: Path) -> None:
    paths = _corpus(tmp_path / "src", n_per_class=5)
    items = [VideoItem(str(p)) for p in paths]
    by_count = write_shards(items, tmp_path / "c", max_count=4, progress=False)
    assert [s["count"] for s in by_count["shards"]] == [4, 4, 2]
    limit = 30_000  # a few videos of ~5 KB each
    by_size = write_shards(items, tmp_path / "s", max_shard_size=limit, progress=False)
    sizes = [s["bytes"] for s in by_size["shards"]]
    assert len(sizes) > 1 and max(sizes) <= limit
    assert sizes == [(tmp_path / "s" / s["name"]).stat().st_size for s in by_size["shards"]]
    assert sum(s["count"] for s in by_size["shards"]) == 10
    # Same samples in the same (seeded, shuffled) order, whatever the split into shards.
    keys = [s["__key__"] for s in _read_back(tmp_path / "s")]
    assert keys == [s["__key__"] for s in _read_back(tmp_path / "c")]
    assert sorted(keys) != keys and sorted(keys)[0] == "000000_jump_0"
    # The tar members are exactly <key>.json + <key>.mp4.
    with tarfile.open(tmp_path / "c" / "shard-000000.tar") as tar:
        assert tar.getnames()[:2] == [f"{keys[0]}.json", f"{keys[0]}.mp4"]


def test_reencode_short_side_and_fps(tmp_path: Path) -> None:
    # 128x96 -> 64x48 (decord 0.6 mis-decodes some widths such as 48 and 72: see the report).
    make_mp4(tmp_path / "v.mp4", num_frames=16, size=(128, 96), fps=8, seed=1)
    items = [VideoItem(str(tmp_path / "v.mp4"), 2, "c")]
    manifest = write_shards(items, tmp_path / "out", short_side=48, fps=4, progress=False)
    assert manifest["transcode"] == {"short_side": 48, "fps": 4}
    (sample,) = _read_back(tmp_path / "out")
    meta = json.loads(sample["json"])
    assert (meta["width"], meta["height"]) == (64, 48)
    assert meta["fps"] == pytest.approx(4.0) and meta["num_frames"] == 8
    with open_video(sample["mp4"]) as reader:  # the json describes the stored bytes
        frames = reader.get_frames(list(range(reader.num_frames)))
    assert frames.shape == (8, 48, 64, 3)
    # Every second source frame, downscaled: the mean colour follows the source closely.
    source = make_frames(16, (128, 96), seed=1)[::2]
    assert abs(frames.mean(axis=(1, 2)) - source.mean(axis=(1, 2))).max() < 6


def test_rerun_replaces_old_shards_and_interrupt_leaves_no_half_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _corpus(tmp_path / "src")
    items = [VideoItem(str(p)) for p in paths]
    out = tmp_path / "out"
    write_shards(items, out, max_count=1, progress=False)
    assert len(list(out.glob("*.tar"))) == 6
    write_shards(items[:2], out, max_count=1, progress=False)  # stale shards 2..5 go away
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST_NAME,
        "shard-000000.tar",
        "shard-000001.tar",
    ]

    def interrupt(skipped: list, skip: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_record_skip", interrupt)
    broken = items[:3] + [VideoItem(str(tmp_path / "gone.mp4"))] + items[3:]
    with pytest.raises(KeyboardInterrupt):
        write_shards(broken, out, max_count=2, progress=False, shuffle_seed=None)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["shard-000000.tar"]  # no manifest, no .tmp; the one complete shard
    with pytest.raises(FileNotFoundError, match="not a complete shard set"):
        read_manifest(out)


def test_bad_arguments_raise_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prefix"):
        write_shards([], tmp_path / "o", prefix="a.b")
    with pytest.raises(ValueError, match="max_count"):
        write_shards([], tmp_path / "o", max_count=0)
    assert not (tmp_path / "o").exists()


def test_cli_shards_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _corpus(tmp_path / "src", n_per_class=2)
    (tmp_path / "src" / "run" / "bad.mp4").write_bytes(b"")
    argv = ["shards", str(tmp_path / "src"), "--out", str(tmp_path / "out")]
    code = cli_main(argv + ["--labels-from-folders", "--max-shard-size", "25KB"])
    assert code == 0
    manifest = read_manifest(tmp_path / "out")
    assert manifest["count"] == 4 and manifest["skipped_by_reason"] == {"empty": 1}
    assert all(s["bytes"] <= 25_000 for s in manifest["shards"])
    out = capsys.readouterr().out
    assert "wrote 4 samples" in out and "empty: 1" in out
    assert cli_main(["shards", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 2
