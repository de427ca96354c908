"""The embedded sample corpus (data/sample) and its generator (tools/make_sample_data.py)."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
MAX_CORPUS_BYTES = 3 * 1024 * 1024


def _load_tool() -> ModuleType:
    # tools/ is a folder of scripts, not a package: load the generator from its path.
    path = ROOT / "tools" / "make_sample_data.py"
    spec = importlib.util.spec_from_file_location("make_sample_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


msd = _load_tool()


def _decode(data: bytes | Path) -> np.ndarray:
    """All frames of an mp4 through decord, uint8 [T, H, W, 3].

    decord is imported here, not at collection: its bundled FFmpeg, once in a process, breaks
    PyAV's libvpx encoder that other test modules use.
    """
    decord = pytest.importorskip("decord")
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    reader = decord.VideoReader(source)
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def _estimate_shift(frames: np.ndarray) -> tuple[int, int]:
    """Dominant (dx, dy) per frame by phase correlation, summed over consecutive frame pairs.

    The whole scene (background and object) translates, so the peak is the scene's
    displacement; the (0, 0) bin is dropped so that a static clip could never pass. Frames wrap
    around, like the generator's torus, so the circular correlation needs no window.
    """
    gray = frames.astype(np.float64).mean(-1)  # [T, H, W]
    spectra = np.fft.fft2(gray)  # [T, H, W]
    cross = spectra[1:] * np.conj(spectra[:-1])  # [T-1, H, W]
    cross /= np.abs(cross) + 1e-9
    surface = np.fft.ifft2(cross).real.sum(0)  # [H, W]
    surface[0, 0] = -np.inf
    dy, dx = np.unravel_index(int(np.argmax(surface)), surface.shape)
    h, w = surface.shape
    return int((dx + w // 2) % w - w // 2), int((dy + h // 2) % h - h // 2)


def _list_entries(name: str) -> list[tuple[str, int]]:
    entries = []
    for line in (SAMPLE / name).read_text().splitlines():
        rel, label = line.split(" ")
        entries.append((rel, int(label)))
    return entries


# --- (a) the committed corpus ------------------------------------------------------------


def test_corpus_layout_labels_and_lists() -> None:
    labels = (SAMPLE / "labels.txt").read_text().splitlines()
    assert labels == sorted(msd.CLASSES)
    folders = sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())
    assert folders == labels

    train, val = _list_entries("train.txt"), _list_entries("val.txt")
    assert not {rel for rel, _ in train} & {rel for rel, _ in val}
    listed = {rel for rel, _ in train + val}
    on_disk = {p.relative_to(SAMPLE).as_posix() for p in SAMPLE.glob("*/*.mp4")}
    assert listed == on_disk
    for rel, label in train + val:
        assert (SAMPLE / rel).is_file()
        assert labels[label] == rel.split("/")[0]  # label int == folder's line in labels.txt
    # Stratified ~75/25 split: every class on both sides, in the same proportion.
    for index in range(len(labels)):
        n_train = sum(label == index for _, label in train)
        n_val = sum(label == index for _, label in val)
        assert n_val > 0 and n_train == 3 * n_val


def test_corpus_size_budget() -> None:
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert 0 < total <= MAX_CORPUS_BYTES


# --- (b) decoding -------------------------------------------------------------------------


def test_committed_video_decodes_and_matches_generator() -> None:
    frames = _decode(SAMPLE / "left" / "left_000.mp4")
    assert frames.shape == (32, 64, 64, 3)
    assert frames.dtype == np.uint8
    # The committed clip is what the documented command produces (seed 0, video 0).
    expected = msd.make_motion_video("left", msd.video_rng(0, "left", 0), 64, 32)
    assert np.abs(frames.astype(float) - expected).mean() < 8.0


def test_encode_round_trip_error_is_small() -> None:
    frames = msd.make_motion_video("expand", np.random.default_rng(3), 64, 16)
    decoded = _decode(msd.encode_mp4(frames, fps=8.0))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(float) - frames).mean() < 8.0


# --- (c) the class is a motion, not an appearance -----------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_translation_direction_is_recovered_from_decoded_frames(seed: int) -> None:
    low, high = msd.SPEED_RANGE
    shifts = {}
    for cls in ("left", "right", "up", "down"):
        # Same generator state: same background, object and start, only the motion differs.
        frames = msd.make_motion_video(cls, np.random.default_rng(seed), 64, 16)
        shifts[cls] = _estimate_shift(_decode(msd.encode_mp4(frames, fps=8.0)))
    for cls, (dx, dy) in shifts.items():
        along, across = (dx, dy) if cls in ("left", "right") else (dy, dx)
        sign = -1 if cls in ("left", "up") else 1
        assert sign * along >= np.floor(low), (cls, dx, dy)
        assert sign * along <= np.ceil(high), (cls, dx, dy)
        assert across == 0, (cls, dx, dy)


def test_single_frame_carries_no_translation_class() -> None:
    # With the same generator state, the first frame is identical for every direction.
    firsts = [
        msd.make_motion_video(cls, np.random.default_rng(7), 64, 4)[0]
        for cls in ("left", "right", "up", "down")
    ]
    for frame in firsts[1:]:
        np.testing.assert_array_equal(frame, firsts[0])


def test_shrink_is_expand_played_backwards() -> None:
    expand = msd.make_motion_video("expand", np.random.default_rng(5), 64, 12)
    shrink = msd.make_motion_video("shrink", np.random.default_rng(5), 64, 12)
    np.testing.assert_array_equal(shrink, expand[::-1])
    # And the zoom is real: the clip changes over time.
    assert np.abs(expand[-1].astype(float) - expand[0]).mean() > 1.0


# --- (d) determinism ----------------------------------------------------------------------


def test_same_seed_same_frames() -> None:
    for cls in msd.CLASSES:
        a = msd.make_motion_video(cls, msd.video_rng(11, cls, 2), 64, 8)
        b = msd.make_motion_video(cls, msd.video_rng(11, cls, 2), 64, 8)
        np.testing.assert_array_equal(a, b)
    c = msd.make_motion_video("left", msd.video_rng(12, "left", 2), 64, 8)
    assert not np.array_equal(c, msd.make_motion_video("left", msd.video_rng(11, "left", 2), 64, 8))


def test_write_corpus_is_deterministic(tmp_path: Path) -> None:
    kwargs = {"videos_per_class": 2, "size": 32, "num_frames": 8, "fps": 8.0, "seed": 4}
    first = msd.write_corpus(tmp_path / "a", **kwargs)
    second = msd.write_corpus(tmp_path / "b", **kwargs)
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second
    ]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(_decode(a), _decode(b))
    for name in ("labels.txt", "train.txt", "val.txt"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
