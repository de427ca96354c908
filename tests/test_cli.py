"""The `vjepa` command line: help texts and exit codes (2 = user error, no traceback)."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from vjepa.cli import CONFIG_COMMANDS, build_parser, main
from vjepa.config import ROOTS

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["shards", "pretrain", "probe", "extract", "export", "import", "demo", "surprise"]


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([cmd, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: vjepa {cmd}" in out
    assert len(build_parser()._subparsers._group_actions[0].choices[cmd].description) > 40


def test_each_config_command_has_a_root_and_a_function():
    # `vjepa <command> CONFIG`: the table entry, its config root and its function agree
    for command, spec in CONFIG_COMMANDS.items():
        assert command in ROOTS, command
        module, function = spec.target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), spec.target
        args = build_parser().parse_args([*command.split(), "cfg.yaml", "run.seed=1"])
        assert (args.config_command, args.target, args.func) == (command, spec.target, spec.func)
        assert (args.config, args.overrides) == ("cfg.yaml", ["run.seed=1"])


def test_unknown_key_exits_2_and_suggests(capsys):
    code = main(["pretrain", str(REPO / "configs/pretrain/demo_cpu.yaml"), "optim.lrr=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "optim.lrr" in err and "optim.lr?" in err
    assert "Traceback" not in err


def test_a_key_of_another_command_exits_2_and_names_it(capsys):
    code = main(["pretrain", str(REPO / "configs/pretrain/demo_cpu.yaml"), "plan.horizon=5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "plan.horizon: the plan section is not used by `vjepa pretrain`" in err
    assert "Traceback" not in err


def test_wrong_type_and_missing_file_exit_2(capsys, tmp_path):
    assert (
        main(["pretrain", str(REPO / "configs/pretrain/demo_cpu.yaml"), "data.batch_size=x"]) == 2
    )
    assert "data.batch_size must be an integer" in capsys.readouterr().err
    assert main(["probe", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_bad_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["shards", "somewhere", "--out", "x", "--max-shard-size", "lots"])
    assert exit_.value.code == 2
    assert "not a size" in capsys.readouterr().err


def test_entry_point_module_and_debug_traceback(tmp_path):
    cmd = [sys.executable, "-m", "vjepa", "pretrain", str(tmp_path / "missing.yaml")]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "not found" in run.stderr
    run = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode != 0 and "Traceback" in run.stderr


def test_missing_shards_fail_before_the_run_folder_is_made(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(
        [
            "pretrain",
            str(REPO / "configs/pretrain/demo_cpu.yaml"),
            f"data.shards={tmp_path / 'nowhere'}",
            f"run.dir={run_dir}",
        ]
    )
    assert code == 2
    assert "nowhere" in capsys.readouterr().err
    assert not run_dir.exists()


def test_user_errors_exit_2_and_bugs_exit_1(capsys, tmp_path, monkeypatch):
    # A user error raised deep in the library (the writer's argument check) is exit 2 ...
    out = tmp_path / "out"
    assert main(["shards", str(tmp_path), "--out", str(out), "--prefix", "a b"]) == 2
    err = capsys.readouterr().err
    assert "shard prefix must match" in err and "Traceback" not in err
    # ... but a ValueError that is not a UsageError is a bug: exit 1, one line, no traceback.
    import vjepa.data.writer

    def buggy(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(vjepa.data.writer, "write_shards", buggy)
    assert main(["shards", str(tmp_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "failed: ValueError: an internal bug (run with --debug" in err
    with pytest.raises(ValueError, match="an internal bug"):
        main(["shards", str(tmp_path), "--out", str(out), "--debug"])
