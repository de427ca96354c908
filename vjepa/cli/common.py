"""What every `vjepa` command's parser shares: exit codes and argument groups."""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_OK, EXIT_RUNTIME, EXIT_USER = 0, 1, 2


def add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
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


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    help: str,
    description: str,
    target: str | None = None,
    command: str | None = None,
) -> argparse.ArgumentParser:
    """The parser of one command; ``func`` runs it. With a ``target`` ("module:function") the
    command is that function of a config file and key=value overrides (see cmd_config);
    ``command`` names its config root (default: ``name``)."""
    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=func, target=target, config_command=command or name)
    if target is not None:
        add_config_args(p)
    return p


def add_heads_args(p: argparse.ArgumentParser, predictor: bool = True) -> None:
    """Head counts of official-format files of a non-official width (weights do not fix them)."""
    default = "default: the official count, else width // 64 (head dim 64), said in one line"
    p.add_argument("--num-heads", type=int, help=f"encoder attention heads ({default})")
    if predictor:
        p.add_argument("--pred-num-heads", type=int, help=f"predictor attention heads ({default})")
