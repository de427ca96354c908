"""Frame folders and images as inputs: discovery, natural order, encoding, decoding back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vjepa.data.decode import DecodeError, open_video
from vjepa.data.formats import ListFormatError
from vjepa.data.frames import (
    DEFAULT_CRF,
    LOSSLESS,
    encode_frame_source,
    input_bytes,
    load_frames,
    natural_key,
    pack_frames_tar,
    read_frame_folders,
    read_frames_tar,
    read_images,
)


def square_frames(num_frames: int, size: tuple[int, int] = (48, 32), seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3]: a 6-px white square moving 3 px right per frame on a flat colour
    that encodes the frame index (so a frame out of order is caught)."""
    width, height = size
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frames[t] = (20 + 11 * t + 7 * seed) % 200, 60, 120
        x = (3 * t + 5 * seed) % (width - 6)
        frames[t, 10:16, x : x + 6] = 255
    return frames


def write_folder(
    folder: Path, frames: np.ndarray, pattern: str = "{:06d}.png", start: int = 1
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        name = pattern.format(t + start)
        Image.fromarray(frame).save(folder / name, quality=95)


def decode_all(data: bytes, backend: str = "pyav") -> np.ndarray:
    with open_video(data, backend) as reader:
        return reader.get_frames(list(range(reader.num_frames)))


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["img_10.jpg", "img_2.jpg", "img_1.jpg", "img_100.jpg"]
    assert sorted(names, key=natural_key) == [
        "img_1.jpg",
        "img_2.jpg",
        "img_10.jpg",
        "img_100.jpg",
    ]


def test_ssv2_layout_lossless_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "ssv2"
    clips = {"101": square_frames(12, seed=1), "7": square_frames(9, seed=2)}
    for vid, frames in clips.items():
        write_folder(root / vid, frames)
    (root / "README.txt").write_text("not a frame")
    listing = read_frame_folders(root)
    assert [Path(i.path).name for i in listing.items] == ["7", "101"]  # natural order
    assert [i.key for i in listing.items] == ["7", "101"]
    assert listing.label_names is None and all(i.label is None for i in listing.items)
    for item in listing.items:
        want = clips[Path(item.path).name]
        data = encode_frame_source(item.path, fps=12, crf=LOSSLESS)
        for backend in ("pyav", "torchcodec"):
            got = decode_all(data, backend)
            assert got.shape == want.shape
            assert np.array_equal(got, want), backend  # bit-exact: PNG in, qp 0 RGB out
        with open_video(data, "pyav") as reader:
            assert reader.fps == pytest.approx(12.0)


def test_kinetics_layout_unpadded_names_and_labels(tmp_path: Path) -> None:
    root = tmp_path / "k400"
    # img_1 .. img_11 without zero padding: a plain sort would put img_10 after img_1
    want = square_frames(11, seed=3)
    write_folder(root / "run" / "vidA", want, pattern="img_{}.png")
    write_folder(root / "jump" / "vidB", square_frames(5, seed=4), pattern="img_{}.png")
    listing = read_frame_folders(root, labels_from_folders=True)
    assert listing.label_names == ["jump", "run"]
    assert [(i.key, i.label, i.label_name) for i in listing.items] == [
        ("jump/vidB", 0, "jump"),
        ("run/vidA", 1, "run"),
    ]
    got = decode_all(encode_frame_source(listing.items[1].path, fps=25, crf=LOSSLESS))
    assert np.array_equal(got, want)  # frames in order 1, 2, ..., 11


def test_labels_from_folders_needs_class_folders(tmp_path: Path) -> None:
    write_folder(tmp_path / "vid", square_frames(3))
    with pytest.raises(ListFormatError, match="class folder"):
        read_frame_folders(tmp_path, labels_from_folders=True)


def test_jpeg_frames_crf_round_trip_error_bound(tmp_path: Path) -> None:
    frames = square_frames(16, size=(65, 33), seed=5)  # odd sides: cropped to 64 x 32
    write_folder(tmp_path / "v", frames, pattern="{:05d}.jpg")
    data = encode_frame_source(tmp_path / "v", fps=30)  # the default CRF
    assert DEFAULT_CRF == 18
    got = decode_all(data)
    assert got.shape == (16, 32, 64, 3)
    err = np.abs(got.astype(np.int16) - frames[:, :32, :64].astype(np.int16))
    assert err.mean() < 3.0  # JPEG q95 + CRF 18 on flat colours and one square
    # the moving square is where it should be in every frame (brightest 6x6 block)
    for t in range(16):
        x = (3 * t + 25) % (65 - 6)  # where square_frames puts it
        assert got[t, 11:15, x + 1 : x + 5].min() > 200


def test_too_few_frames_is_skipped_with_reason(tmp_path: Path) -> None:
    write_folder(tmp_path / "a", square_frames(8))
    write_folder(tmp_path / "b", square_frames(2))
    listing = read_frame_folders(tmp_path, min_frames=4)
    assert [i.key for i in listing.items] == ["a"]
    assert [(s.source, s.reason) for s in listing.skipped] == [("b", "too_few_frames")]


def test_bad_frames_raise_decode_error_with_reason(tmp_path: Path) -> None:
    write_folder(tmp_path / "mixed", square_frames(3))
    Image.fromarray(square_frames(1, size=(40, 32))[0]).save(tmp_path / "mixed" / "000004.png")
    with pytest.raises(DecodeError) as err:
        load_frames(tmp_path / "mixed")
    assert err.value.reason == "frame_size"
    write_folder(tmp_path / "corrupt", square_frames(2))
    (tmp_path / "corrupt" / "000003.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DecodeError) as err:
        load_frames(tmp_path / "corrupt")
    assert err.value.reason == "unreadable"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DecodeError) as err:
        input_bytes(tmp_path / "empty", fps=10)
    assert err.value.reason == "empty"


@pytest.mark.parametrize("image_frames", [1, 2])
def test_image_as_clip(tmp_path: Path, image_frames: int) -> None:
    img = square_frames(1, size=(40, 30), seed=6)[0]
    (tmp_path / "cat").mkdir()
    Image.fromarray(img).save(tmp_path / "cat" / "x.png")
    Image.fromarray(img[::-1]).save(tmp_path / "cat" / "y.png")
    listing = read_images(tmp_path, labels_from_folders=True)
    assert listing.label_names == ["cat"]
    assert [i.key for i in listing.items] == ["cat/x", "cat/y"]
    data = input_bytes(listing.items[0].path, fps=1, crf=LOSSLESS, image_frames=image_frames)
    got = decode_all(data)
    assert got.shape == (image_frames, 30, 40, 3)
    assert all(np.array_equal(f, img) for f in got)


def test_video_file_bytes_pass_through(tmp_path: Path) -> None:
    p = tmp_path / "clip.mp4"
    p.write_bytes(b"anything")
    assert input_bytes(p, fps=10) == b"anything"
    with pytest.raises(DecodeError) as err:
        input_bytes(tmp_path / "gone.mp4", fps=10)
    assert err.value.reason == "missing"


def test_frames_tar_alternative_round_trip(tmp_path: Path) -> None:
    frames = square_frames(7, seed=7)
    write_folder(tmp_path / "v", frames, pattern="f{}.png")
    blob = pack_frames_tar(tmp_path / "v")
    assert np.array_equal(read_frames_tar(blob), frames)
    assert np.array_equal(read_frames_tar(blob, [6, 0]), frames[[6, 0]])
