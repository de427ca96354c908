"""`vjepa shards` on frame folders and images, and `vjepa shards --check`, through the CLI."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vjepa.cli import main
from vjepa.data.decode import open_video
from vjepa.data.frames import DEFAULT_CRF
from vjepa.data.inputs import detect_input_format


def _frames(n: int, seed: int, size: tuple[int, int] = (48, 32)) -> np.ndarray:
    w, h = size
    out = np.zeros((n, h, w, 3), np.uint8)  # [T, H, W, 3]
    for t in range(n):
        out[t] = (20 + 11 * t + 7 * seed) % 200, 60, 120
        out[t, 10:16, 3 * t % (w - 6) : 3 * t % (w - 6) + 6] = 255
    return out


def _write(folder: Path, frames: np.ndarray, pattern: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / pattern.format(t + 1))


def _samples(out: Path) -> dict[str, dict]:
    """key -> {"meta": json, "frames": decoded uint8 [T, H, W, 3]} of every shard in ``out``."""
    found: dict[str, dict] = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, _, ext = m.name.partition(".")
                data = tar.extractfile(m).read()
                entry = found.setdefault(key, {})
                if ext == "json":
                    entry["meta"] = json.loads(data)
                else:
                    with open_video(data, "pyav") as reader:
                        entry["frames"] = reader.get_frames(list(range(reader.num_frames)))
    return found


def test_kinetics_style_frame_folders_become_labelled_decodable_shards(tmp_path: Path) -> None:
    src = tmp_path / "k400"
    lengths = {"archery/v1": 5, "archery/v2": 7, "bowling/v3": 9}
    for i, (rel, n) in enumerate(lengths.items()):
        _write(src / rel, _frames(n, i), "img_{:d}.jpg")  # img_1 .. img_9: natural order
    assert detect_input_format(src) == "frames"
    out = tmp_path / "shards"
    args = ["shards", str(src), "--out", str(out), "--labels-from-folders", "--crf", "lossless"]
    assert main([*args, "--frames-fps", "10"]) == 0
    samples = _samples(out)
    assert len(samples) == 3
    by_source = {s["meta"]["source"]: s for s in samples.values()}
    assert set(by_source) == set(lengths)
    for rel, n in lengths.items():
        s = by_source[rel]
        assert s["frames"].shape[0] == n == s["meta"]["num_frames"]
        assert s["meta"]["fps"] == pytest.approx(10.0)
        assert s["meta"]["label_name"] == rel.split("/")[0]
    # lossless: the frames come back as the JPEG decoder gave them, in natural order
    jpeg = np.stack(
        [np.asarray(Image.open(src / "bowling/v3" / f"img_{t}.jpg")) for t in range(1, 10)]
    )
    assert np.array_equal(by_source["bowling/v3"]["frames"], jpeg)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_classes"] == 2
    assert manifest["frame_encoding"] == {"fps": 10.0, "crf": None, "image_frames": 1}


def test_ssv2_style_frame_folders_at_the_default_crf(tmp_path: Path) -> None:
    src = tmp_path / "ssv2"
    for i in range(2):
        _write(src / f"{1000 + i}", _frames(6, i), "{:06d}.png")
    out = tmp_path / "shards"
    assert main(["shards", str(src), "--out", str(out)]) == 0
    samples = _samples(out)
    assert {s["meta"]["source"] for s in samples.values()} == {"1000", "1001"}
    for s in samples.values():
        assert s["frames"].shape == (6, 32, 48, 3)
        assert s["meta"]["label"] is None
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["frame_encoding"]["crf"] == DEFAULT_CRF


@pytest.mark.parametrize("image_frames", [1, 2])
def test_images_become_clips_of_image_frames(tmp_path: Path, image_frames: int) -> None:
    src = tmp_path / "images"
    src.mkdir()
    for i in range(3):
        Image.fromarray(_frames(1, i)[0]).save(src / f"im{i}.png")
    (src / "notes.txt").write_text("not an image")
    assert detect_input_format(src) == "images"
    out = tmp_path / "shards"
    args = ["--image-frames", str(image_frames), "--crf", "lossless"]
    assert main(["shards", str(src), "--out", str(out), *args]) == 0
    samples = _samples(out)
    assert len(samples) == 3
    for s in samples.values():
        name = s["meta"]["source"]
        assert s["frames"].shape[0] == image_frames == s["meta"]["num_frames"]
        want = np.asarray(Image.open(src / name))  # [H, W, 3]
        assert all(np.array_equal(f, want) for f in s["frames"])


def test_format_images_on_a_class_tree(tmp_path: Path) -> None:
    src = tmp_path / "imagenet"
    for c in ("cat", "dog"):
        (src / c).mkdir(parents=True)
        Image.fromarray(_frames(1, 0)[0]).save(src / c / "a.png")
        Image.fromarray(_frames(1, 1)[0]).save(src / c / "b.png")
    out = tmp_path / "shards"
    argv = ["shards", str(src), "--out", str(out), "--format", "images", "--labels-from-folders"]
    assert main(argv) == 0
    samples = _samples(out)
    assert sorted(s["meta"]["label_name"] for s in samples.values()) == ["cat"] * 2 + ["dog"] * 2
    assert all(s["frames"].shape[0] == 1 for s in samples.values())


def test_bad_crf_and_missing_out_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["shards", str(tmp_path), "--out", str(tmp_path / "o"), "--crf", "60"])
    assert exc.value.code == 2
    assert main(["shards", str(tmp_path)]) == 2


def _shards(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i, n in enumerate((3, 8, 8)):
        _write(src / f"c{i % 2}" / f"v{i}", _frames(n, i), "{:03d}.png")
    out = tmp_path / "shards"
    assert main(["shards", str(src), "--out", str(out), "--labels-from-folders"]) == 0
    return out


def test_check_passes_a_good_set_and_writes_check_json(tmp_path: Path, capsys) -> None:
    out = _shards(tmp_path)
    capsys.readouterr()
    report_dir = tmp_path / "report"
    argv = ["shards", "--check", str(out), "--min-frames", "5", "--out", str(report_dir)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 ok, 0 bad" in printed and "1 below 5 frames" in printed
    report = json.loads((report_dir / "check.json").read_text())
    assert report["ok"] == 3 and report["bad"] == []
    assert [s["num_frames"] for s in report["too_short"]] == [3]
    assert report["labels"]["counts"] == {"0": 2, "1": 1}
    # --full decodes every frame: 3 + 8 + 8; default: first + last of each
    assert main(["shards", "--check", str(out), "--full"]) == 0
    assert json.loads((out / "check.json").read_text())["frames_decoded"] == 19


def test_check_exits_1_on_a_bad_sample(tmp_path: Path, capsys) -> None:
    out = _shards(tmp_path)
    shard = sorted(out.glob("*.tar"))[0]
    with tarfile.open(shard, "a") as tar:
        data = b"\x00not a video" * 10
        info = tarfile.TarInfo("999999_broken.mp4")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    capsys.readouterr()
    assert main(["shards", "--check", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "3 ok, 1 bad" in printed and "999999_broken" in printed
    report = json.loads((out / "check.json").read_text())
    assert [b["key"] for b in report["bad"]] == ["999999_broken"]
