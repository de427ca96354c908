"""Every input `vjepa shards` takes: the video formats of :mod:`vjepa.data.formats` plus frame
folders and still images (:mod:`vjepa.data.frames`).

The two image formats live here, not in ``formats.read_source``, because ``frames`` builds on
``formats`` (its ``Listing`` / ``VideoItem``): reading them there would be a circle of imports.

- ``frames``: one folder of JPEG/PNG frames per video (SSv2-style ``root/<id>/000001.jpg`` or
  Kinetics-style ``root/<class>/<video>/img_00001.jpg`` with ``--labels-from-folders``);
- ``images``: one image per sample (``root/<class>/x.jpg`` with ``--labels-from-folders``).

``auto`` on a folder whose first media file (a sorted walk, the folder's own files first) is an
image, not a video, picks ``images`` when that image lies directly in the folder, else ``frames``. An ImageNet-style class tree of images
looks like frame folders: name ``--format images`` for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vjepa.data.formats import FORMATS, VIDEO_EXTENSIONS, Listing, detect_format, read_source
from vjepa.data.frames import IMAGE_EXTENSIONS, read_frame_folders, read_images
from vjepa.errors import UsageError

INPUT_FORMATS: tuple[str, ...] = (*FORMATS, "frames", "images")
"""The ``--format`` choices of `vjepa shards`."""

IMAGE_FORMATS: tuple[str, ...] = ("frames", "images")
"""Formats whose inputs are encoded (``frames.input_bytes``) rather than copied."""


def _first_media(root: Path) -> tuple[str, Path] | None:
    """("video" | "image", path) of the first media file of a sorted walk of ``root`` (root's
    own files first), so detection never scans a whole frame-folder tree."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            suffix = Path(name).suffix.lower()
            if suffix in VIDEO_EXTENSIONS:
                return "video", Path(dirpath) / name
            if suffix in IMAGE_EXTENSIONS:
                return "image", Path(dirpath) / name
    return None


def detect_input_format(src: str | Path) -> str:
    """``detect_format``, plus ``frames`` / ``images`` for a folder of images and no video."""
    fmt = detect_format(src)
    if fmt != "folder":
        return fmt
    found = _first_media(Path(src))
    if found is None or found[0] == "video":
        return "folder"
    return "images" if found[1].parent == Path(src) else "frames"


def read_inputs(
    src: str | Path, *, fmt: str = "auto", labels_from_folders: bool = False, **video_options: Any
) -> Listing:
    """Read any input of `vjepa shards` (``fmt="auto"`` guesses it, see the module doc).

    ``video_options`` (``split``, ``split_id``, ``root``) go to :func:`read_source` with the
    video formats; the image formats take ``labels_from_folders`` only.
    """
    if fmt not in INPUT_FORMATS:
        raise UsageError(f"unknown input format {fmt!r} (one of {', '.join(INPUT_FORMATS)})")
    fmt = detect_input_format(src) if fmt == "auto" else fmt
    if fmt in IMAGE_FORMATS:
        read = read_frame_folders if fmt == "frames" else read_images
        return read(src, labels_from_folders=labels_from_folders)
    return read_source(src, fmt=fmt, labels_from_folders=labels_from_folders, **video_options)
