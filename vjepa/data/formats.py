"""Dataset list readers: turn a folder or an official annotation set into a list of videos.

Every reader returns a :class:`Listing`: the videos in a deterministic order (``VideoItem``),
the class names (index = label, or None for unlabelled data) and the inputs it had to skip
(``SkippedInput``, e.g. a Kinetics clip that was never downloaded). Readers do not decode
videos; the shard writer finds unreadable ones. Supported:

- ``folder``   every video under a folder (recursive); optionally the class is the folder name.
               A file counts as a video by its suffix (:data:`VIDEO_EXTENSIONS`, a complete list)
               or, for any other suffix, by its content (the container is probed: a video stream
               that is not a still image). Every other file is listed as skipped (``not_video``).
- ``list``     ``path label`` lines (the original V-JEPA format, space- or comma-separated).
- ``ucf101``   ``classInd.txt`` + ``trainlist0N.txt`` / ``testlist0N.txt``.
- ``hmdb51``   ``<class>_test_split<N>.txt`` (1 = train, 2 = test, 0 = unused).
- ``kinetics`` CSV ``label,youtube_id,time_start,time_end,split[,is_cc]``.
- ``ssv2``     ``something-something-v2-{labels,train,validation}.json``.

A malformed annotation file raises :class:`ListFormatError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vjepa.data.encode import sniff_video
from vjepa.errors import UsageError

VIDEO_EXTENSIONS: tuple[str, ...] = (
    *(".mp4", ".m4v", ".mov", ".qt", ".mkv", ".mk3d", ".webm", ".avi", ".divx"),  # common
    *(".mpeg", ".mpg", ".mpe", ".m1v", ".m2v", ".mpv", ".m2p", ".vob"),  # MPEG program streams
    *(".ts", ".m2t", ".mts", ".m2ts", ".tp", ".trp"),  # MPEG transport streams
    *(".flv", ".f4v", ".wmv", ".asf", ".3gp", ".3g2", ".ogv", ".ogm", ".mxf", ".dv", ".dif"),
    *(".rm", ".rmvb", ".nut", ".y4m", ".ivf", ".mj2", ".amv", ".wtv", ".gxf"),
    *(".h264", ".264", ".h265", ".265", ".hevc", ".mjpeg", ".mjpg"),  # raw elementary streams
)
"""File suffixes (lower case) of video containers FFmpeg reads: taken without opening the file.
A file of any other suffix is taken when its content probes as a video (:func:`vjepa.data.encode.sniff_video`)."""

FORMATS: tuple[str, ...] = ("auto", "folder", "list", "ucf101", "hmdb51", "kinetics", "ssv2")


class ListFormatError(UsageError):
    """An annotation / list file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class VideoItem:
    """One input video. ``label`` is 0-based (None = unlabelled)."""

    path: str
    label: int | None = None
    label_name: str | None = None
    key: str | None = None
    """Preferred sample key stem (e.g. the SSv2 id); the writer makes it unique and safe."""
    start: float | None = None
    """Segment start in seconds within the original video (Kinetics annotations)."""
    end: float | None = None


@dataclass(frozen=True)
class SkippedInput:
    """An input that will not be written, with a short machine-readable reason."""

    source: str
    reason: str
    detail: str = ""


@dataclass
class Listing:
    """What a reader found: items in order, class names (index = label) and skipped inputs."""

    items: list[VideoItem]
    label_names: list[str] | None = None
    skipped: list[SkippedInput] = field(default_factory=list)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _scan_files(root: Path) -> list[Path]:
    """All files under ``root``, sorted by relative path (deterministic across runs)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        found += [Path(dirpath) / f for f in filenames]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _scan_videos(root: Path) -> list[Path]:
    """The files under ``root`` with a video suffix, sorted (Kinetics looks clips up by stem)."""
    return [p for p in _scan_files(root) if _is_video(p)]


def _split_videos(root: Path) -> tuple[list[Path], list[SkippedInput]]:
    """Every file under ``root``: the videos (by suffix, else by content) and the rest."""
    videos, skipped = [], []
    for p in _scan_files(root):
        why = None if _is_video(p) else sniff_video(p)
        if why is None:
            videos.append(p)
        else:
            # relative, like the writer's `source` paths: a manifest does not leak local paths
            skipped.append(SkippedInput(p.relative_to(root).as_posix(), "not_video", why))
    return videos, skipped


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found (not a folder): {path}")
    return path


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty, non-comment lines of a text file."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [(n, s.strip()) for n, s in enumerate(lines, 1) if s.strip() and not s.startswith("#")]


# ----------------------------------------------------------------------------------------
# folder and list files
# ----------------------------------------------------------------------------------------


def read_folder(root: str | Path, *, labels_from_folders: bool = False) -> Listing:
    """Every video under ``root`` (recursive, sorted); every other file is listed as skipped.

    With ``labels_from_folders`` the class is the first folder below ``root``
    (``root/<class>/.../video.mp4``) and labels index the sorted class names.
    """
    root = _require_dir(Path(root), "video folder")
    paths, skipped = _split_videos(root)
    if not labels_from_folders:
        return Listing([VideoItem(str(p)) for p in paths], skipped=skipped)
    top = [p for p in paths if len(p.relative_to(root).parts) < 2]
    if top:
        raise ListFormatError(
            f"--labels-from-folders: {top[0]} is directly in {root}; put every video in a "
            "class folder (root/<class>/video.mp4)"
        )
    classes = sorted({p.relative_to(root).parts[0] for p in paths})
    index = {c: i for i, c in enumerate(classes)}
    items = []
    for p in paths:
        name = p.relative_to(root).parts[0]
        items.append(VideoItem(str(p), index[name], name))
    return Listing(items, classes, skipped)


def read_label_names(path: str | Path) -> list[str]:
    """Class names, one per line; line ``i`` is label ``i``."""
    return [s for _, s in _text_lines(_require_file(Path(path), "label names file"))]


def _split_list_line(text: str, comma: bool) -> tuple[str, int | None]:
    """``path label`` -> (path, label); a line whose last field is not an int has no label."""
    parts = text.rsplit(",", 1) if comma else text.rsplit(None, 1)
    if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1].strip()):
        return parts[0].strip(), int(parts[1])
    return text, None


def read_list(
    path: str | Path, *, root: str | Path | None = None, label_names: str | Path | None = None
) -> Listing:
    """A list file of ``path label`` lines (space- or comma-separated; a header is allowed).

    Relative paths are resolved against ``root`` (default: the list file's folder). Class
    names come from ``label_names`` or, when present, ``labels.txt`` next to the list file.
    Lines without an integer label are allowed only if no line has one (unlabelled data).
    """
    path = _require_file(Path(path), "list file")
    base = Path(root) if root is not None else path.parent
    lines = _text_lines(path)
    comma = bool(lines) and "," in lines[0][1] and not re.search(r"\s-?\d+$", lines[0][1])
    parsed = [(n, *_split_list_line(s, comma)) for n, s in lines]
    labelled = any(label is not None for _, _, label in parsed)
    if parsed and (labelled or not _is_video(Path(parsed[0][1]))) and parsed[0][2] is None:
        parsed = parsed[1:]  # a header line such as "path,label"
    bad = [n for n, _, label in parsed if labelled and label is None]
    if bad:
        raise ListFormatError(f"{path}:{bad[0]}: expected 'path label' with an integer label")
    names_file = Path(label_names) if label_names else path.parent / "labels.txt"
    names = read_label_names(names_file) if label_names or names_file.is_file() else None
    items = []
    for n, rel, label in parsed:
        if label is not None and (label < 0 or (names is not None and label >= len(names))):
            raise ListFormatError(f"{path}:{n}: label {label} outside 0..{len(names or []) - 1}")
        name = names[label] if names is not None and label is not None else None
        items.append(VideoItem(str(base / rel), label, name))
    return Listing(items, names)


# ----------------------------------------------------------------------------------------
# UCF101 and HMDB51
# ----------------------------------------------------------------------------------------


def _split_kind(split: str) -> str:
    """'train' or 'test' (val is the test split of UCF101 / HMDB51)."""
    if split not in ("train", "test", "val"):
        raise UsageError(f"unknown split {split!r} (train, test or val)")
    return "train" if split == "train" else "test"


def _check_split_id(split_id: int) -> None:
    if split_id not in (1, 2, 3):
        raise UsageError(f"split id must be 1, 2 or 3, got {split_id!r}")


def read_ucf101(
    annotations: str | Path,
    *,
    root: str | Path | None = None,
    split: str = "train",
    split_id: int = 1,
) -> Listing:
    """UCF101 from ``ucfTrainTestlist/`` (classInd.txt, trainlist0N.txt, testlist0N.txt).

    ``root`` holds ``<class>/v_<class>_gXX_cYY.avi`` (default: ``UCF-101`` next to the
    annotation folder, else that folder's parent). Labels are 0-based (classInd is 1-based).
    """
    _check_split_id(split_id)
    ann = _require_dir(Path(annotations), "UCF101 annotation folder")
    if root is None:
        root = ann.parent / "UCF-101" if (ann.parent / "UCF-101").is_dir() else ann.parent
    class_file = _require_file(ann / "classInd.txt", "UCF101 classInd.txt")
    classes: dict[int, str] = {}
    for n, s in _text_lines(class_file):
        idx, _, name = s.partition(" ")
        if not idx.isdigit() or not name.strip():
            raise ListFormatError(f"{class_file}:{n}: expected '<index> <ClassName>'")
        classes[int(idx) - 1] = name.strip()
    names = [classes[i] for i in sorted(classes)]
    if sorted(classes) != list(range(len(names))):
        raise ListFormatError(f"{class_file}: class indices must run 1..{len(names)}")
    index = {c: i for i, c in enumerate(names)}
    kind = _split_kind(split)
    list_file = _require_file(ann / f"{kind}list0{split_id}.txt", f"UCF101 {kind} list")
    items = []
    for n, s in _text_lines(list_file):
        rel = s.split()[0]
        name = rel.replace("\\", "/").split("/")[0]
        if name not in index:
            raise ListFormatError(f"{list_file}:{n}: class folder {name!r} not in classInd.txt")
        items.append(VideoItem(str(Path(root) / rel), index[name], name))
    return Listing(items, names)


def read_hmdb51(
    annotations: str | Path,
    *,
    root: str | Path | None = None,
    split: str = "train",
    split_id: int = 1,
) -> Listing:
    """HMDB51 from the ``testTrainMulti_7030_splits`` folder of ``<class>_test_split<N>.txt``.

    Each line is ``<video.avi> <0|1|2>`` (1 = train, 2 = test, 0 = unused); videos live in
    ``root/<class>/<video.avi>`` (default root: the annotation folder's parent).
    """
    _check_split_id(split_id)
    ann = _require_dir(Path(annotations), "HMDB51 annotation folder")
    root = Path(root) if root is not None else ann.parent
    suffix = f"_test_split{split_id}.txt"
    files = sorted(ann.glob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"no HMDB51 split files *{suffix} in {ann}")
    names = sorted(f.name[: -len(suffix)] for f in files)
    want = "1" if _split_kind(split) == "train" else "2"
    items = []
    for label, name in enumerate(names):
        split_file = ann / f"{name}{suffix}"
        for n, s in _text_lines(split_file):
            parts = s.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ListFormatError(f"{split_file}:{n}: expected '<video.avi> <0|1|2>'")
            if parts[1] == want:
                items.append(VideoItem(str(root / name / parts[0]), label, name))
    return Listing(items, names)


# ----------------------------------------------------------------------------------------
# Kinetics and Something-Something v2
# ----------------------------------------------------------------------------------------

_KINETICS_SPLITS = {"train": ("train",), "val": ("val", "validate"), "test": ("test",)}


def kinetics_stem(youtube_id: str, start: float, end: float) -> str:
    """File stem of a downloaded Kinetics clip: ``<youtube_id>_<start:06d>_<end:06d>``."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def read_kinetics(
    csv_path: str | Path, *, root: str | Path | None = None, split: str | None = None
) -> Listing:
    """Kinetics-400/600/700 from its CSV (``label,youtube_id,time_start,time_end,split``).

    Clips named ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` are looked up anywhere under
    ``root`` (``root/<split>/``, ``root/<label>/``, ...; default: the CSV's folder), by one
    scan. Rows of another ``split`` are dropped; clips that were never downloaded are reported
    as skipped with reason ``missing``. Labels index the sorted class names of the CSV.
    """
    csv_path = _require_file(Path(csv_path), "Kinetics CSV")
    root = _require_dir(Path(root) if root is not None else csv_path.parent, "Kinetics root")
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    need = {"youtube_id", "time_start", "time_end"}
    if not rows or not need <= set(rows[0]):
        raise ListFormatError(f"{csv_path}: expected a header with {', '.join(sorted(need))}")
    names = sorted({r["label"] for r in rows if r.get("label")}) or None
    if split is not None and rows[0].get("split"):
        accepted = _KINETICS_SPLITS.get(split, (split,))
        kept = [r for r in rows if r["split"] in accepted]
        if not kept:
            found = sorted({r["split"] for r in rows})
            raise ListFormatError(f"{csv_path}: no rows of split {split!r} (found {found})")
        rows = kept
    index = {c: i for i, c in enumerate(names or [])}
    by_stem: dict[str, Path] = {}
    for p in _scan_videos(root):
        by_stem.setdefault(p.stem, p)
    listing = Listing([], names)
    for n, r in enumerate(rows, 2):
        try:
            start, end = float(r["time_start"]), float(r["time_end"])
        except (TypeError, ValueError):
            raise ListFormatError(f"{csv_path}:{n}: time_start/time_end must be numbers") from None
        stem = kinetics_stem(r["youtube_id"], start, end)
        label = r.get("label") or None
        if stem not in by_stem:
            listing.skipped.append(SkippedInput(stem, "missing", f"no video {stem}.* under {root}"))
            continue
        item = VideoItem(str(by_stem[stem]), index.get(label), label, stem, start, end)
        listing.items.append(item)
    return listing


_SSV2_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def read_ssv2(
    annotations: str | Path, *, root: str | Path | None = None, split: str = "train"
) -> Listing:
    """Something-Something v2 from ``something-something-v2-{labels,train,validation}.json``.

    The class of a video is its ``template`` with the ``[ ]`` brackets removed, looked up in
    the labels file; videos are ``root/<id>.webm`` (default root: the annotation folder).
    """
    ann = Path(annotations)
    ann = ann.parent if ann.is_file() else _require_dir(ann, "SSv2 annotation folder")
    root = Path(root) if root is not None else ann
    if split not in _SSV2_SPLITS:
        raise UsageError(f"unknown split {split!r} (train, val or test)")
    labels_file = _require_file(ann / "something-something-v2-labels.json", "SSv2 labels")
    split_file = ann / f"something-something-v2-{_SSV2_SPLITS[split]}.json"
    try:
        label_map = {k: int(v) for k, v in json.loads(labels_file.read_text()).items()}
        entries = json.loads(_require_file(split_file, "SSv2 split file").read_text())
    except (json.JSONDecodeError, ValueError, AttributeError) as err:
        raise ListFormatError(f"SSv2 annotations in {ann} are malformed: {err}") from None
    names = [""] * len(label_map)
    for name, i in label_map.items():
        names[i] = name
    items = []
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or "id" not in e:
            raise ListFormatError(f"{split_file}: entry {n} has no 'id'")
        template = e.get("template")
        name = template.replace("[", "").replace("]", "") if template else None
        if name is not None and name not in label_map:
            raise ListFormatError(f"{split_file}: entry {n}: class {name!r} not in the labels")
        label = label_map[name] if name is not None else None
        items.append(VideoItem(str(root / f"{e['id']}.webm"), label, name, str(e["id"])))
    return Listing(items, names)


# ----------------------------------------------------------------------------------------
# entry point of `vjepa shards`
# ----------------------------------------------------------------------------------------


def detect_format(src: str | Path) -> str:
    """Guess the format of ``src`` (a folder or an annotation / list file)."""
    src = Path(src)
    if src.is_dir():
        if (src / "classInd.txt").is_file():
            return "ucf101"
        if any(src.glob("*_test_split1.txt")):
            return "hmdb51"
        if (src / "something-something-v2-labels.json").is_file():
            return "ssv2"
        return "folder"
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src}")
    if src.name.startswith("something-something-v2-") and src.suffix == ".json":
        return "ssv2"
    if src.name == "classInd.txt" or re.fullmatch(r"(train|test)list0[123]\.txt", src.name):
        return "ucf101"
    with src.open(encoding="utf-8-sig", errors="replace") as f:
        header = f.readline().replace(" ", "").lower()
    if "youtube_id" in header and "time_start" in header:
        return "kinetics"
    return "list"


def read_source(
    src: str | Path,
    *,
    fmt: str = "auto",
    split: str = "train",
    split_id: int = 1,
    root: str | Path | None = None,
    labels_from_folders: bool = False,
) -> Listing:
    """Read any supported input; ``fmt="auto"`` guesses it from ``src`` (see ``detect_format``)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown input format {fmt!r} (one of {', '.join(FORMATS)})")
    fmt = detect_format(src) if fmt == "auto" else fmt
    src = Path(src)
    if fmt == "folder":
        return read_folder(src, labels_from_folders=labels_from_folders)
    if fmt == "list":
        return read_list(src, root=root)
    if fmt == "ucf101":
        ann = src if src.is_dir() else src.parent
        return read_ucf101(ann, root=root, split=split, split_id=split_id)
    if fmt == "hmdb51":
        ann = src if src.is_dir() else src.parent
        return read_hmdb51(ann, root=root, split=split, split_id=split_id)
    if fmt == "kinetics":
        return read_kinetics(src, root=root, split=split)
    return read_ssv2(src, root=root, split=split)
