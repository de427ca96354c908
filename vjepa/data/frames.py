"""Frame folders and still images as video inputs of ``vjepa shards``.

Many datasets ship decoded frames instead of videos (SSv2 and Kinetics mirrors as JPEG folders)
and image sets are used beside video (V-JEPA 2 pretrains on ImageNet too). This module

- finds them: :func:`read_frame_folders` (one folder of JPEG/PNG frames per video; SSv2-style
  ``root/<id>/000001.jpg`` or Kinetics-style ``root/<class>/<video>/img_00001.jpg``, frames in
  natural order, so ``img_2`` comes before ``img_10``) and :func:`read_images` (one image per
  sample). Both return a :class:`~vjepa.data.formats.Listing` of ``VideoItem``s whose ``path``
  is the folder or the image file, exactly like the other readers;
- turns one such input into the bytes a shard stores: :func:`encode_frame_source` (an H.264 mp4,
  lossless or at a stated CRF, through :func:`vjepa.data.decode.encode_frames`), and
  :func:`input_bytes`, which returns a video file's own bytes and encodes frame folders /
  images, so the writer has one call for every kind of input.

Images: ``image_frames`` is how many frames an image becomes (default 1). 1 stores a one-frame
clip (the clip sampler pads a short video by repeating its last frame, so a clip of any length
is that image); 2 (= the tubelet size) stores it repeated to fill one tubelet, which is how
V-JEPA 2's code feeds a single image to the video encoder (``x.unsqueeze(2).repeat(1, 1,
tubelet_size, 1, 1)``, e.g. its action-conditioned planner's ``encode``). The stored bytes
differ, the decoded clips do not: 1 is smaller.

Storage, measured with ``tools/bench_frames.py`` (under the shared CPU lock, 2-core machine; 12
synthetic videos of 64 JPEG q90 frames, 320x240, a drifting texture with +-6 grey-level noise
and a moving square; one 16-frame clip at step 4 / all 64 frames, per video):

=====================  ==========  ==============================  =========================
store                  kB / video  clip ms (PyAV / torchcodec)     all frames ms
=====================  ==========  ==============================  =========================
JPEG frames in a tar   1778        9.6 (PIL)                       36.7 (PIL)
mp4 lossless (qp 0)    8192        425 / 776                       467 / 925
mp4 CRF 18 (default)   216         47 / 52                         71 / 42
=====================  ==========  ==============================  =========================

Lossless H.264 of camera-like frames is 4.6x the JPEGs and 9x slower to decode, so the
default is CRF 18 (:data:`DEFAULT_CRF`; mean absolute error 6.8-7.0 grey levels against the
decoded JPEGs on these noisy frames, most of it the noise; CRF 23: 87 kB, 7.9-8.1). The tar
of JPEGs decodes a clip about 5x faster than the CRF-18 mp4 but is 8x larger, and every loader
stage reads mp4: it is provided as :func:`pack_frames_tar` / :func:`read_frames_tar` for the
benchmark only.

Every failure is a :class:`~vjepa.data.decode.DecodeError` whose ``reason`` the writer counts
(``missing``, ``empty``, ``unreadable``, ``frame_size``), so one bad folder is skipped, never
fatal.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vjepa.data.decode import DecodeError
from vjepa.data.encode import encode_frames
from vjepa.data.formats import ListFormatError, Listing, SkippedInput, VideoItem

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Suffixes (lower case) of frame / image files."""

LOSSLESS = None
"""``crf=LOSSLESS``: libx264rgb at ``qp 0`` on RGB, bit-exact frames."""

DEFAULT_CRF = 18
"""The CRF frame folders and images are stored at unless told otherwise (see the table above)."""


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``img_2.jpg`` before ``img_10.jpg``."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def frame_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder``, in natural order (hidden files ignored)."""
    folder = Path(folder)
    names = [n for n in os.listdir(folder) if not n.startswith(".") and is_image(n)]
    return [folder / n for n in sorted(names, key=natural_key)]


def is_frame_folder(path: str | Path) -> bool:
    """A folder that directly holds at least one image file."""
    path = Path(path)
    return path.is_dir() and bool(frame_files(path))


def _walk_dirs(root: Path) -> list[Path]:
    """Every folder under ``root`` (itself included), sorted, symlinks followed."""
    found = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.append(Path(dirpath))
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def _labelled(
    root: Path, paths: list[Path], labels_from_folders: bool, what: str
) -> tuple[list[VideoItem], list[str] | None]:
    """Items for ``paths``; with ``labels_from_folders`` the class is the first folder below root."""
    rels = [p.relative_to(root) for p in paths]
    keys = [r.with_suffix("").as_posix() if r.suffix else r.as_posix() for r in rels]
    if not labels_from_folders:
        return [VideoItem(str(p), key=k) for p, k in zip(paths, keys)], None
    flat = [r for r in rels if len(r.parts) < 2]
    if flat:
        raise ListFormatError(
            f"--labels-from-folders: {what} {root / flat[0]} is directly in {root}; "
            f"put every {what} in a class folder (root/<class>/...)"
        )
    classes = sorted({r.parts[0] for r in rels})
    index = {c: i for i, c in enumerate(classes)}
    items = [
        VideoItem(str(p), index[r.parts[0]], r.parts[0], k) for p, r, k in zip(paths, rels, keys)
    ]
    return items, classes


def read_frame_folders(
    root: str | Path, *, labels_from_folders: bool = False, min_frames: int = 1
) -> Listing:
    """Every folder under ``root`` that holds image frames is one video (sorted, recursive).

    SSv2-style ``root/<id>/000001.jpg``: unlabelled, key ``<id>``. Kinetics-style
    ``root/<class>/<video>/img_00001.jpg`` with ``labels_from_folders``: label = index of
    ``<class>`` among the sorted class folders, key ``<class>/<video>``. A frame folder with
    fewer than ``min_frames`` frames is listed as skipped (``too_few_frames``).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"frame folder root not found (not a folder): {root}")
    folders, skipped = [], []
    for d in _walk_dirs(root):
        n = len(frame_files(d))
        if n == 0:
            continue
        if n < min_frames:
            rel = d.relative_to(root).as_posix()
            skipped.append(SkippedInput(rel, "too_few_frames", f"{n} < {min_frames} frames"))
            continue
        folders.append(d)
    items, classes = _labelled(root, folders, labels_from_folders, "frame folder")
    return Listing(items, classes, skipped)


def read_images(root: str | Path, *, labels_from_folders: bool = False) -> Listing:
    """Every image file under ``root`` is one sample (sorted, recursive).

    With ``labels_from_folders`` the class is the first folder below ``root``
    (``root/<class>/.../image.jpg``, ImageNet-style).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found (not a folder): {root}")
    paths = []
    for d in _walk_dirs(root):
        paths += frame_files(d)
    items, classes = _labelled(root, paths, labels_from_folders, "image")
    return Listing(items, classes)


def _load_rgb(path: Path) -> np.ndarray:
    """One image as uint8 ``[H, W, 3]`` RGB (grey / palette / alpha converted)."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))  # [H, W, 3]
    except FileNotFoundError:
        raise DecodeError("missing", f"{path} not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DecodeError("unreadable", f"{path.name}: {err}") from None


def load_frames(path: str | Path, *, image_frames: int = 1) -> np.ndarray:
    """The frames of a frame folder or an image: uint8 ``[T, H, W, 3]``.

    An image gives ``image_frames`` copies of itself. Every frame of a folder must have the
    size of the first one (``frame_size`` otherwise: resizing silently would distort it).
    """
    path = Path(path)
    if image_frames < 1:
        raise ValueError(f"image_frames must be >= 1, got {image_frames}")
    if path.is_file():
        frame = _load_rgb(path)  # [H, W, 3]
        return np.repeat(frame[None], image_frames, axis=0)  # [T, H, W, 3]
    if not path.is_dir():
        raise DecodeError("missing", f"{path} is neither a frame folder nor an image")
    files = frame_files(path)
    if not files:
        raise DecodeError("empty", f"no {'/'.join(IMAGE_EXTENSIONS)} frames in {path}")
    frames = [_load_rgb(files[0])]
    for f in files[1:]:
        frame = _load_rgb(f)
        if frame.shape != frames[0].shape:
            raise DecodeError(
                "frame_size",
                f"{f.name} is {frame.shape[1]}x{frame.shape[0]}, "
                f"{files[0].name} {frames[0].shape[1]}x{frames[0].shape[0]}",
            )
        frames.append(frame)
    return np.stack(frames)  # [T, H, W, 3]


def _even(frames: np.ndarray) -> np.ndarray:
    """Crop the last row / column of odd-sized frames (yuv420p needs even sides)."""
    t, h, w, _ = frames.shape
    return frames[:, : h - h % 2, : w - w % 2]


def encode_video(frames: np.ndarray, *, fps: float, crf: int | None = DEFAULT_CRF) -> bytes:
    """uint8 ``[T, H, W, 3]`` -> mp4 bytes, keyframe every second (at most 32 frames), no B-frames.

    ``crf=None`` (:data:`LOSSLESS`): libx264rgb ``qp 0`` on rgb24, the decoded frames equal the
    input exactly (large and slow to decode, see the module doc). An int: libx264 yuv420p at
    that CRF (odd sides lose their last row/column).
    The short GOP keeps random access to a clip cheap, as in the writer's transcode.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    gop = str(max(1, min(int(round(fps)), 32)))
    if crf is None:
        opts = {"qp": "0", "preset": "veryfast", "g": gop, "bf": "0"}
        return encode_frames(frames, fps=fps, codec="libx264rgb", pix_fmt="rgb24", options=opts)
    opts = {"crf": str(crf), "preset": "veryfast", "g": gop, "bf": "0"}
    return encode_frames(_even(frames), fps=fps, codec="libx264", options=opts)


def encode_frame_source(
    path: str | Path, *, fps: float, crf: int | None = DEFAULT_CRF, image_frames: int = 1
) -> bytes:
    """A frame folder or an image -> the mp4 bytes a shard stores (see :func:`encode_video`)."""
    return encode_video(load_frames(path, image_frames=image_frames), fps=fps, crf=crf)


def is_frame_source(path: str | Path) -> bool:
    """True for a frame folder or an image file: inputs :func:`encode_frame_source` takes."""
    path = Path(path)
    return is_image(path) if path.is_file() else is_frame_folder(path)


def input_bytes(
    path: str | Path, *, fps: float, crf: int | None = DEFAULT_CRF, image_frames: int = 1
) -> bytes:
    """The bytes a shard stores for any input: a video file as it is, a frame folder or an
    image encoded. Raises :class:`DecodeError` (``missing``, ``unreadable``, ...)."""
    path = Path(path)
    if path.is_dir() or is_image(path):  # an empty folder fails as "empty", not "unreadable"
        return encode_frame_source(path, fps=fps, crf=crf, image_frames=image_frames)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DecodeError("missing", "file not found") from None
    except OSError as err:
        raise DecodeError("unreadable", f"{type(err).__name__}: {err.strerror or err}") from None


# ----------------------------------------------------------------------------------------
# the measured alternative: a tar of the original frame files
# ----------------------------------------------------------------------------------------


def pack_frames_tar(folder: str | Path) -> bytes:
    """The frame files of ``folder`` as an uncompressed tar (``000000.jpg``, ... in order)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, f in enumerate(frame_files(folder)):
            data = f.read_bytes()
            info = tarfile.TarInfo(f"{i:06d}{f.suffix.lower()}")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_frames_tar(data: bytes, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode frames ``indices`` (all when None) of a :func:`pack_frames_tar` blob with PIL."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        if indices is None:
            indices = range(len(members))
        out = []
        for i in indices:
            f = tar.extractfile(members[i])
            assert f is not None  # a regular file member
            with Image.open(f) as img:
                out.append(np.asarray(img.convert("RGB")))  # [H, W, 3]
    return np.stack(out)  # [T, H, W, 3]
