"""`vjepa shards`: videos, frame folders or images to webdataset shards, and ``--check``.

Imports its library modules lazily, like the rest of the CLI, for start-up speed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vjepa.cli.common import EXIT_OK, EXIT_RUNTIME, add_command
from vjepa.errors import UsageError


def _size(text: str) -> int:
    """Parse a byte size such as 500MB, 1.5GiB or 1000000."""
    units = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2}
    units |= {"g": 1e9, "gb": 1e9, "gib": 1024**3}
    t = text.strip().lower()
    num = t.rstrip("abgikm")
    unit = t[len(num) :]
    try:
        return int(float(num) * units[unit])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500MB, 2GiB)") from None


def cmd_shards(args: argparse.Namespace) -> int:
    if args.check:
        return _check_shards(args)
    from vjepa.data.inputs import IMAGE_FORMATS, detect_input_format, read_inputs
    from vjepa.data.writer import FrameEncoding, print_summary, write_shards

    if args.out is None:
        raise UsageError("--out is required (except with --check)")
    fmt = detect_input_format(args.src) if args.format == "auto" else args.format
    listing = read_inputs(
        args.src, fmt=fmt, split=args.split, split_id=args.split_id, root=args.root,
        labels_from_folders=args.labels_from_folders,
    )  # fmt: skip
    frames = FrameEncoding(args.frames_fps, args.crf, args.image_frames)
    manifest = write_shards(
        listing.items, args.out, prefix=args.prefix, max_shard_size=args.max_shard_size,
        max_count=args.max_count, short_side=args.short_side, fps=args.fps, workers=args.workers,
        label_names=listing.label_names, skipped=listing.skipped,
        shuffle_seed=None if args.no_shuffle else args.seed,
        # json `source` paths are stored relative to this, so shards don't leak local paths
        source_root=args.root or (args.src if Path(args.src).is_dir() else Path(args.src).parent),
        frames=frames if fmt in IMAGE_FORMATS else None,
    )  # fmt: skip
    print_summary(manifest)
    return EXIT_OK


def _check_shards(args: argparse.Namespace) -> int:
    """``vjepa shards --check SHARDS``: the summary table, check.json; exit 1 on bad samples."""
    from vjepa.data.check import check_shards, format_check

    out = args.out
    if out is None:  # next to local shards, else in the current folder
        src = Path(args.src)
        out = src if src.is_dir() else src.parent if src.exists() else Path(".")
    report = check_shards(args.src, full=args.full, min_frames=args.min_frames, out=out)
    print(format_check(report))
    print(f"wrote {report['written_to']}")
    return EXIT_RUNTIME if report["bad"] or report["shard_problems"] else EXIT_OK


def _crf(text: str) -> int | None:
    """``--crf``: an x264 CRF 0..51, or ``lossless``."""
    if text.strip().lower() == "lossless":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CRF: {text!r} (0..51 or lossless)") from None
    if not 0 <= value <= 51:
        raise argparse.ArgumentTypeError(f"CRF must be in 0..51 or lossless, got {value}")
    return value


def add_shards(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "shards", cmd_shards,
        help="write videos into webdataset tar shards",
        description="Turn a folder, a list file or an official annotation set (UCF101, HMDB51, "
        "Kinetics, SSv2) into webdataset shards <prefix>-%%06d.tar (<key>.mp4 + <key>.json) "
        "plus manifest.json, samples in a seeded random order (--no-shuffle keeps the input "
        "order). Files that are not videos and unreadable videos are skipped and listed in "
        "manifest.json with their reason.",
    )  # fmt: skip
    p.add_argument(
        "src",
        help="folder of videos / frame folders / images, list/CSV file, or annotation "
        "file/folder; with --check: the shards (folder, glob or brace pattern)",
    )
    p.add_argument(
        "--out", help="output folder for the shards (required); with --check: for check.json"
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=[
            "auto",
            "folder",
            "list",
            "ucf101",
            "hmdb51",
            "kinetics",
            "ssv2",
            "frames",
            "images",
        ],
        help="input format (auto: by SRC; a folder of images and no videos: frames, or images "
        "when they lie directly in SRC)",
    )
    p.add_argument("--split", default="train", help="split to read: train, test or val")
    p.add_argument("--split-id", type=int, default=1, choices=[1, 2, 3], help="UCF101/HMDB51 split")
    p.add_argument("--root", help="video root folder for annotation formats")
    p.add_argument(
        "--labels-from-folders", action="store_true", help="parent folder name is the class"
    )
    p.add_argument("--short-side", type=int, help="re-encode (H.264) with this short side")
    p.add_argument("--fps", type=float, help="re-encode at this frame rate")
    p.add_argument(
        "--max-shard-size", type=_size, default="1GB", help="bytes per shard (e.g. 500MB)"
    )
    p.add_argument("--max-count", type=int, default=1000, help="samples per shard")
    p.add_argument("--workers", type=int, default=1, help="parallel reader/encoder processes")
    p.add_argument("--prefix", default="shard", help="shard file name prefix")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffled sample order")
    p.add_argument(
        "--no-shuffle", action="store_true", help="keep the input order (default: shuffled)"
    )
    p.add_argument(
        "--frames-fps", type=float, default=25.0, help="frames / images: fps of the stored mp4"
    )
    p.add_argument(
        "--crf", type=_crf, default=18, help="frames / images: H.264 CRF 0..51 or lossless"
    )
    p.add_argument(
        "--image-frames", type=int, default=1,
        help="images: frames per image (1: a one-frame clip; 2 = a tubelet, as V-JEPA 2)",
    )  # fmt: skip
    p.add_argument(
        "--check", action="store_true",
        help="validate the shard set SRC instead: decode, frame counts, sizes, fps, labels, "
        "duplicates; prints a table, writes check.json, exit 1 on bad samples",
    )  # fmt: skip
    p.add_argument("--full", action="store_true", help="--check: decode every frame")
    p.add_argument(
        "--min-frames", type=int, help="--check: list samples with fewer frames (clip span)"
    )
