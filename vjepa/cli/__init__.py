"""`vjepa <command>`: parse the arguments, call one function, map errors to exit codes.

Exit codes: 0 success, 1 runtime failure or bug, 2 user error (bad config, missing file, bad
argument or input: :class:`vjepa.errors.UsageError`). Errors print one line; `--debug` shows
the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from vjepa.cli.common import (
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USER,
    add_command,
    add_config_args,
    add_heads_args,
)
from vjepa.cli.shards import add_shards
from vjepa.config import Config, ConfigError, load_config
from vjepa.errors import UsageError
from vjepa.train.runlock import check_free

USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ConfigError, FileNotFoundError)
"""Exit 2. ConfigError and the readers' errors are UsageErrors; a missing file is the user's
too. Any other exception, a ValueError included, is a bug: exit 1."""


# ----------------------------------------------------------------------------------------
# Commands: each takes the parsed args and calls one library function.
# ----------------------------------------------------------------------------------------


def _refuse_if_held(folder: str | Path) -> None:
    """A folder held by another live run: refused now, before the command's heavy imports
    (seconds). Single-process only: under ``accelerate launch`` rank 0 may already hold it
    for this very run; the command's own lock (every rank agrees) decides there."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        check_free(folder)


def _run_config(args: argparse.Namespace) -> tuple[Config, Any]:
    """(config, result) of ``args.target`` ("module:function") called with the loaded config."""
    # config errors first, before heavy imports; the command's root rejects other commands' keys
    cfg = load_config(args.config, args.overrides, command=args.config_command)
    _refuse_if_held(cfg.run.dir)
    module, function = args.target.split(":")
    return cfg, getattr(importlib.import_module(module), function)(cfg)


def cmd_config(args: argparse.Namespace) -> int:
    """``vjepa pretrain | probe | surprise | world train``: the function of :data:`CONFIG_COMMANDS`.
    A wrong ``accelerate launch`` line is a LaunchError, a UsageError (exit 2)."""
    _run_config(args)
    return EXIT_OK


def cmd_extract(args: argparse.Namespace) -> int:
    _refuse_if_held(args.out)  # extract() holds the folder
    from vjepa.eval.probe.features import extract

    # Without a config, the clip geometry (frames, resolution) is the backbone's own.
    data_cfg = None
    if args.config or args.overrides:
        data_cfg = load_config(args.config, args.overrides, command="extract").data
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
        num_heads=args.num_heads,
    )
    print(f"features written to {out}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from vjepa.artifacts.export import export
    from vjepa.artifacts.sources import classify

    src = Path(args.src)
    if classify(src) in ("world_run", "world_checkpoint", "world_export"):
        from vjepa.world.io import export_world_model

        print(f"exported the world model to {export_world_model(src, args.out)}")
        return EXIT_OK
    formats = [f for f in (args.format or "").split(",") if f]
    out = export(
        args.src,
        args.out,
        which=args.which,
        formats=formats,
        probe_report=Path(args.probe_report) if args.probe_report else None,
        num_heads=args.num_heads,
        pred_num_heads=args.pred_num_heads,
    )
    print(f"exported to {out}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from vjepa.artifacts.export import import_official

    out = import_official(
        args.file, args.out, num_heads=args.num_heads, pred_num_heads=args.pred_num_heads
    )
    print(f"imported to {out}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """``vjepa demo [world]``: holds the demo folder's run lock (its steps lock their own)."""
    from vjepa.train.faults import hold_run_folder

    world = args.overrides[:1] == ["world"]  # `vjepa demo world [--env ENV] [k=v ...]`
    if args.finetune and (args.seeds is not None or world):
        raise UsageError("--finetune runs one seed of the pan / objects demo: no --seeds, no world")
    if args.no_pretrain and not world:
        raise UsageError("--no-pretrain is for `vjepa demo world` only")
    out = Path("runs/demo_world") if world and args.out == "runs/demo" else Path(args.out)
    with hold_run_folder(out):
        return cmd_demo_world(args, out) if world else _demo(args, out)


def _demo(args: argparse.Namespace, out: Path) -> int:
    if args.seeds is not None:  # `vjepa demo --seeds N`: the comparison over N seeds
        from vjepa.demo.seeds import run_seeds

        run_seeds(
            out, args.seeds, overrides=args.overrides, quick=args.quick,
            corpus=args.corpus, eval_split=args.split,
        )  # fmt: skip
        return EXIT_OK
    if args.finetune:  # `vjepa demo --finetune`: fine-tuned vs random init vs frozen probe
        from vjepa.demo.finetune import run_finetune_demo

        run_finetune_demo(
            out, overrides=args.overrides, quick=args.quick, corpus=args.corpus,
            eval_split=args.split,
        )  # fmt: skip
        return EXIT_OK
    from vjepa.demo.pretrain import run_demo

    run_demo(
        out, overrides=args.overrides, quick=args.quick, corpus=args.corpus,
        eval_split=args.split,
    )  # fmt: skip
    return EXIT_OK


def cmd_demo_world(args: argparse.Namespace, out: Path) -> int:
    from vjepa.demo.world import run_world_demo

    if args.seeds is not None:  # `vjepa demo world --seeds N`: success over training seeds
        from vjepa.demo.seeds import run_world_seeds

        run_world_seeds(
            out, args.seeds, env=args.env, overrides=args.overrides[1:], quick=args.quick,
            pretrained=not args.no_pretrain,
        )  # fmt: skip
        return EXIT_OK
    run_world_demo(
        out, env=args.env, overrides=args.overrides[1:], quick=args.quick,
        pretrained=not args.no_pretrain,
    )  # fmt: skip
    return EXIT_OK


def cmd_collect(args: argparse.Namespace) -> int:
    _refuse_if_held(args.out)  # collect() holds the folder
    from vjepa.data.writer import print_summary

    if args.env == "droid":
        from vjepa.world.droid import droid_to_shards

        if not args.root:
            raise UsageError("vjepa collect droid needs --root (the folder of DROID trajectories)")
        manifest = droid_to_shards(
            args.root, args.out, camera=args.camera, frame_step=args.frame_step,
            short_side=args.short_side, max_count=args.max_count,
        )  # fmt: skip
    else:
        if args.episodes is None or args.steps is None:
            raise UsageError(f"vjepa collect {args.env} needs --episodes and --steps")
        from vjepa.world.collect import collect

        manifest = collect(
            args.env, args.out, episodes=args.episodes, steps=args.steps, seed=args.seed,
            repeat_prob=args.repeat_prob, max_count=args.max_count,
        )  # fmt: skip
    print_summary(manifest)
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    cfg, report = _run_config(args)
    print(f"report written to {Path(cfg.run.dir) / 'report.json'} ({report['episodes']} episodes)")
    return EXIT_OK


# ----------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------


def _add_extract(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "extract", cmd_extract,
        help="write frozen features of a shard set to disk",
        description="Stream a shard set through a frozen encoder and write pooled [N, D] or "
        "per-token features with keys and labels (.npy or .safetensors).",
    )  # fmt: skip
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
    add_heads_args(p, predictor=False)
    add_config_args(p, required=False)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "export", cmd_export,
        help="export a frozen encoder (safetensors, TorchScript, ONNX, Hugging Face)",
        description="Export the target (default), context encoder or predictor of a run folder, "
        "checkpoint or official V-JEPA file as model.safetensors + config.json + README.md. "
        "A `vjepa finetune` run exports its fine-tuned encoder + head.safetensors and its "
        "labels (vjepa.load_classifier).",
    )  # fmt: skip
    p.add_argument("src", help="run folder, checkpoint folder, export folder or official .pt file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--which", default=None, choices=["target", "context", "predictor"])
    p.add_argument("--format", help="extra formats, comma-separated: torchscript,onnx,hf")
    p.add_argument("--probe-report", help="a probe report.json to include in the model card")
    add_heads_args(p)


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "import", cmd_import,
        help="convert an official V-JEPA / V-JEPA 2 checkpoint",
        description="Convert an official V-JEPA or V-JEPA 2 checkpoint file into an export "
        "folder of ours (target encoder, context encoder and predictor).",
    )  # fmt: skip
    p.add_argument("file", help="official checkpoint (.pt / .pth.tar)")
    p.add_argument("--out", required=True, help="output folder")
    add_heads_args(p)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "demo", cmd_demo,
        help="shards + short CPU pretraining + probe comparison on the sample corpus",
        description="Write shards of data/sample, pretrain the tiny model for a few minutes, then "
        "probe the pretrained and a random-init encoder and print both accuracies.",
    )  # fmt: skip
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument(
        "--seeds",
        type=int,
        help="run the demo (or `demo world`) for training seeds 0..N-1 into OUT/seed<s> and "
        "report the spread (OUT/seeds.json)",
    )
    p.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the demo's pretrained encoder and a random-init one "
        "(configs/finetune/demo_cpu.yaml) and compare both with the frozen attentive probe",
    )
    p.add_argument(
        "--env", help="`vjepa demo world` only: the env (gymnasium id, file.py:Class, module:Class)"
    )
    p.add_argument(
        "--no-pretrain",
        action="store_true",
        help="`vjepa demo world` only: skip the encoder pretraining; the world model's encoder "
        "starts from a seeded random init of the same architecture (the floor for pretraining)",
    )
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
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="pretraining overrides; `vjepa demo world [--env ENV] [k=v ...]` runs the world-model "
        "chain (collect, pretrain, world train, plan) instead",
    )


def _add_world(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "world",
        help="world-model commands (world train)",
        description="Action-conditioned world model over a frozen encoder.",
    )
    wsub = p.add_subparsers(dest="world_command", metavar="WORLD_COMMAND", required=True)
    _add_config(wsub, "world train")


def _add_collect(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "collect", cmd_collect,
        help="random-action trajectories of an env as trajectory shards",
        description="Roll out random actions with persistence in ENV (a gymnasium id, "
        "path/file.py:Class or package.module:Class) and write trajectory shards: <key>.mp4 "
        "(lossless frames), <key>.actions.npy [T-1, A], <key>.states.npy [T, S], <key>.json, "
        "plus manifest.json. The same seed gives the same shards.",
    )  # fmt: skip
    p.add_argument(
        "env",
        help="env: gymnasium id, path/file.py:Class or package.module:Class; or droid "
        "(convert DROID-style trajectory folders under --root)",
    )
    p.add_argument("--episodes", type=int, help="episodes to roll out (envs)")
    p.add_argument("--steps", type=int, help="frames per episode, T (envs)")
    p.add_argument("--out", required=True, help="output folder for the shards")
    p.add_argument("--seed", type=int, default=0, help="seed of resets and actions")
    p.add_argument("--repeat-prob", type=float, default=0.8, help="chance to keep the last action")
    p.add_argument("--max-count", type=int, default=100, help="episodes per shard")
    p.add_argument("--root", help="droid: folder searched for trajectory.h5 folders")
    p.add_argument(
        "--camera", default="ext1", help="droid: wrist, ext1, ext2, left, right or a serial"
    )
    p.add_argument("--frame-step", type=int, default=1, help="droid: keep every n-th step")
    p.add_argument(
        "--short-side", type=int, default=256, help="droid: resize frames to this short side"
    )


class ConfigCommand(NamedTuple):
    """A command that runs one library function on a config file and key=value overrides."""

    target: str
    """"module:function" called with the loaded config (imported when the command runs)."""
    help: str
    description: str
    func: Callable[[argparse.Namespace], int] = cmd_config
    """What runs it: cmd_config, or a command that also prints what the function returned."""


CONFIG_COMMANDS: dict[str, ConfigCommand] = {
    "pretrain": ConfigCommand(
        "vjepa.train.pretrain:pretrain",
        help="V-JEPA pretraining (resumes from the run folder)",
        description="Pretrain a V-JEPA encoder. Re-running the same command resumes from the "
        "latest complete checkpoint in run.dir. Multi-GPU: accelerate launch -m vjepa pretrain ...",
    ),
    "probe": ConfigCommand(
        "vjepa.eval.probe.run:run_probe",
        help="frozen-backbone probe (attentive, linear, kNN)",
        description="Train an attentive, linear or kNN probe on a frozen encoder and write "
        "report.json, confusion.png and a table.",
    ),
    "finetune": ConfigCommand(
        "vjepa.train.finetune:finetune",
        help="full fine-tuning of an encoder with a classification head (resumes)",
        description="Fine-tune an encoder (a run folder, export, official file or random) end "
        "to end with an attentive or linear head: layer-wise lr decay, drop path, mixup / "
        "CutMix, label smoothing; evaluates on finetune.dev_shards, keeps the best checkpoint "
        "(train.keep_best=dev_top1) and writes report.json on finetune.val_shards.",
    ),
    "world train": ConfigCommand(
        "vjepa.world.train:world_train",
        help="train the action-conditioned predictor (resumes from the run folder)",
        description="Train the world model's predictor on trajectory shards (vjepa collect) over "
        "a frozen encoder (world.encoder). Same loop, checkpoints and resume as pretraining.",
    ),
    "plan": ConfigCommand(
        "vjepa.world.planning.mpc:run_plan",
        help="MPC with CEM / MPPI on held-out tasks, against random and oracle baselines",
        description="Plan to goal images with a world model (plan.model) or the true simulator "
        "(plan.model=oracle) on plan.episodes tasks of plan.env; writes report.json, "
        "episodes.jsonl, trajectories.png, energy_landscape.png and episode.gif into run.dir.",
        func=cmd_plan,
    ),
    "surprise": ConfigCommand(
        "vjepa.eval.surprise.run:run_surprise",
        help="violation of expectation: pairwise accuracy on possible / impossible videos",
        description="Score possible / impossible video pairs (surprise.pairs CSV) by the "
        "predictor's error on future frames; writes report.json and surprise.png.",
    ),
}
"""`vjepa <command> CONFIG [key.sub=value ...]`: the command's config root (vjepa.config.ROOTS)
has the same name."""


def _add_config(sub: argparse._SubParsersAction, command: str) -> None:
    """The parser of ``CONFIG_COMMANDS[command]`` (named by its last word under ``sub``)."""
    spec = CONFIG_COMMANDS[command]
    add_command(
        sub, command.split()[-1], spec.func, help=spec.help, description=spec.description,
        target=spec.target, command=command,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa",
        description="V-JEPA-style self-supervised video pretraining: shards, pretraining, probing, export.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_shards(sub)
    _add_config(sub, "pretrain")
    _add_config(sub, "probe")
    _add_config(sub, "finetune")
    _add_extract(sub)
    _add_export(sub)
    _add_import(sub)
    _add_demo(sub)
    _add_world(sub)
    _add_collect(sub)
    _add_config(sub, "plan")
    _add_config(sub, "surprise")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    parser = build_parser()
    args, extra = parser.parse_known_args([a for a in argv if a != "--debug"])
    # key=value overrides after an option (`vjepa demo world --out DIR k=v`): argparse stops
    # the nargs="*" list at the option; anything else unknown is still an error.
    if extra and (
        not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra)
    ):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    args.debug = debug
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        _say(f"vjepa {args.command}: error: {err}")
        return EXIT_USER
    except KeyboardInterrupt:
        _say(f"vjepa {args.command}: interrupted")
        return 130
    except Exception as err:  # a runtime failure: one line, traceback with --debug
        if args.debug:
            raise
        _say(
            f"vjepa {args.command}: failed: {type(err).__name__}: {err} (run with --debug for the traceback)"
        )
        return EXIT_RUNTIME


def _say(line: str) -> None:
    """One line to stderr in one write, so ranks sharing a stderr never split each other's lines."""
    sys.stderr.flush()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
