"""`vjepa <command>`: parse the arguments, call one function, map errors to exit codes.

Exit codes: 0 success, 1 runtime failure, 2 user error (bad config, missing file, bad
argument). Errors print one line; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vjepa.config import ConfigError, load_config

EXIT_OK, EXIT_RUNTIME, EXIT_USER = 0, 1, 2


class UsageError(ValueError):
    """A bad command-line argument (exit code 2)."""


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


# ----------------------------------------------------------------------------------------
# Commands: each takes the parsed args and calls one library function.
# ----------------------------------------------------------------------------------------


def cmd_shards(args: argparse.Namespace) -> int:
    from vjepa.data.formats import read_source
    from vjepa.data.writer import print_summary, write_shards

    listing = read_source(
        args.src,
        fmt=args.format,
        split=args.split,
        split_id=args.split_id,
        root=args.root,
        labels_from_folders=args.labels_from_folders,
    )
    manifest = write_shards(
        listing.items,
        args.out,
        prefix=args.prefix,
        max_shard_size=args.max_shard_size,
        max_count=args.max_count,
        short_side=args.short_side,
        fps=args.fps,
        workers=args.workers,
        label_names=listing.label_names,
        skipped=listing.skipped,
        # json `source` paths are stored relative to this, so shards don't leak local paths
        source_root=args.root or (args.src if Path(args.src).is_dir() else Path(args.src).parent),
    )
    print_summary(manifest)
    return EXIT_OK


def cmd_pretrain(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)  # config errors first, before heavy imports
    from vjepa.train import pretrain

    pretrain(cfg)
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    from vjepa.probe.run import run_probe

    run_probe(cfg)
    return EXIT_OK


def cmd_extract(args: argparse.Namespace) -> int:
    from vjepa.probe.features import extract

    # Without a config, the clip geometry (frames, resolution) is the backbone's own.
    data_cfg = None
    if args.config or args.overrides:
        data_cfg = load_config(args.config, args.overrides).data
    out = extract(
        args.backbone,
        args.shards,
        Path(args.out),
        fmt=args.format,
        pooled=not args.tokens,
        data_cfg=data_cfg,
        num_clips=args.clips,
        num_crops=args.crops,
        batch_size=args.batch_size,
    )
    print(f"features written to {out}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from vjepa.export import export

    formats = [f for f in (args.format or "").split(",") if f]
    out = export(
        args.src,
        args.out,
        which=args.which,
        formats=formats,
        probe_report=Path(args.probe_report) if args.probe_report else None,
        num_heads=args.num_heads,
    )
    print(f"exported to {out}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from vjepa.export import import_official

    out = import_official(args.file, args.out, num_heads=args.num_heads)
    print(f"imported to {out}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from vjepa.demo import run_demo

    run_demo(
        Path(args.out), overrides=args.overrides, quick=args.quick, corpus=args.corpus,
        eval_split=args.split,
    )  # fmt: skip
    return EXIT_OK


# ----------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------


def _add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    if required:
        p.add_argument("config", help="YAML config file (see configs/)")
    else:
        p.add_argument("--config", help="YAML config file for clip geometry (data.* keys)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="override any config key, e.g. optim.lr=3e-4 data.batch_size=16",
    )


def _add_shards(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shards",
        help="write videos into webdataset tar shards",
        description="Turn a folder, a list file or an official annotation set (UCF101, HMDB51, "
        "Kinetics, SSv2) into webdataset shards <prefix>-%%06d.tar (<key>.mp4 + <key>.json) "
        "plus manifest.json. Unreadable inputs are skipped and listed with their reason.",
    )
    p.add_argument("src", help="folder of videos, list/CSV file, or annotation file/folder")
    p.add_argument("--out", required=True, help="output folder for the shards")
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", "folder", "list", "ucf101", "hmdb51", "kinetics", "ssv2"],
        help="input format (auto: folder or list by SRC)",
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
    p.set_defaults(func=cmd_shards)


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="V-JEPA pretraining (resumes from the run folder)",
        description="Pretrain a V-JEPA encoder. Re-running the same command resumes from the "
        "latest complete checkpoint in run.dir. Multi-GPU: accelerate launch -m vjepa pretrain ...",
    )
    _add_config_args(p)
    p.set_defaults(func=cmd_pretrain)


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="frozen-backbone probe (attentive, linear, kNN)",
        description="Train an attentive, linear or kNN probe on a frozen encoder and write "
        "report.json, confusion.png and a table.",
    )
    _add_config_args(p)
    p.set_defaults(func=cmd_probe)


def _add_extract(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="write frozen features of a shard set to disk",
        description="Stream a shard set through a frozen encoder and write pooled [N, D] or "
        "per-token features with keys and labels (.npy or .safetensors).",
    )
    p.add_argument(
        "backbone", help="export folder, run folder, checkpoint, official file or 'random'"
    )
    p.add_argument("shards", help="shard URLs (folder, glob or brace pattern)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default="safetensors", choices=["npy", "safetensors"])
    p.add_argument(
        "--tokens", action="store_true", help="keep per-token features (default: pooled)"
    )
    p.add_argument("--clips", type=int, default=1, help="temporal clips per video")
    p.add_argument("--crops", type=int, default=1, choices=[1, 3], help="spatial crops per clip")
    p.add_argument("--batch-size", type=int, default=8)
    _add_config_args(p, required=False)
    p.set_defaults(func=cmd_extract)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a frozen encoder (safetensors, TorchScript, ONNX, Hugging Face)",
        description="Export the target (default), context encoder or predictor of a run folder, "
        "checkpoint or official V-JEPA file as model.safetensors + config.json + README.md.",
    )
    p.add_argument("src", help="run folder, checkpoint folder, export folder or official .pt file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--which", default="target", choices=["target", "context", "predictor"])
    p.add_argument("--format", help="extra formats, comma-separated: torchscript,onnx,hf")
    p.add_argument("--probe-report", help="a probe report.json to include in the model card")
    p.add_argument(
        "--num-heads", type=int, help="attention heads (official files of unusual width)"
    )
    p.set_defaults(func=cmd_export)


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="convert an official V-JEPA / V-JEPA 2 checkpoint",
        description="Convert an official V-JEPA or V-JEPA 2 checkpoint file into an export "
        "folder of ours (target encoder, context encoder and predictor).",
    )
    p.add_argument("file", help="official checkpoint (.pt / .pth.tar)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--num-heads", type=int, help="attention heads (official files of unusual width)"
    )
    p.set_defaults(func=cmd_import)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="shards + short CPU pretraining + probe comparison on the sample corpus",
        description="Write shards of data/sample, pretrain the tiny model for a few minutes, then "
        "probe the pretrained and a random-init encoder and print both accuracies.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument(
        "--corpus",
        choices=["pan", "objects"],
        default="pan",
        help="pan: the demo corpus; objects: the second corpus (final check only)",
    )
    p.add_argument(
        "--split",
        choices=["val", "dev"],
        default="val",
        help="evaluate on val (report) or dev (where settings are chosen)",
    )
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="pretraining overrides")
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa",
        description="V-JEPA-style self-supervised video pretraining: shards, pretraining, probing, export.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_shards(sub)
    _add_pretrain(sub)
    _add_probe(sub)
    _add_extract(sub)
    _add_export(sub)
    _add_import(sub)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, UsageError, FileNotFoundError, ValueError) as err:
        if args.debug:
            raise
        print(f"vjepa {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print(f"vjepa {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a runtime failure: one line, traceback with --debug
        if args.debug:
            raise
        print(
            f"vjepa {args.command}: failed: {type(err).__name__}: {err} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
