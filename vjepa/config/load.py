"""Loading a command's config: defaults, a YAML file, ``key.sub=value`` overrides, checks.

The root of the command (:data:`vjepa.config.commands.ROOTS`) decides which sections exist. An
unknown key, a key of a section the command does not read, an old key name, a value of the wrong
type or out of range is a :class:`ConfigError` that names the key (and, for a typo, the closest
valid key). Configs stored by older versions (a checkpoint's config.yaml) are upgraded instead.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from vjepa.config.commands import RENAMED, ROOTS, Config
from vjepa.config.sections import ConfigError


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    command: str | None = None,
) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``key.sub=value`` overrides,
    into the root of `vjepa <command>` (pretrain, world train, probe, extract, surprise, plan).

    ``command=None``: the command whose own section the config sets (probe, surprise, world,
    plan or objective), else pretrain. The CLI always names its command.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        raw = loaded
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        _set_dotted(raw, key.strip(), yaml.safe_load(text) if text.strip() else "")
    guessed = command is None
    command = command or _command_of(raw)
    root = _root(command)
    try:
        _check_sections(raw, root, command)
    except ConfigError as err:
        if not guessed or command == "pretrain":
            raise
        hint = f"; the config was taken for `vjepa {command}` by its sections (pass command=...)"
        raise ConfigError(f"{err}{hint}") from None
    cfg = _build(root, raw, prefix="")
    validate(cfg)
    return cfg


def _root(command: str) -> type[Config]:
    if command not in ROOTS:
        raise ValueError(f"no config for command {command!r} (choose from {', '.join(ROOTS)})")
    return ROOTS[command]


def _command_of(raw: dict[str, Any]) -> str:
    """The command whose own section (held by no other root) ``raw`` sets; else pretrain."""
    own = {
        name: [c for c, r in ROOTS.items() if name in (f.name for f in dataclasses.fields(r))]
        for name in raw
    }
    found = sorted({users[0] for users in own.values() if len(users) == 1})
    if len(found) > 1:
        raise ConfigError(
            f"the config sets sections of {' and '.join(f'`vjepa {c}`' for c in found)}: "
            "load_config(..., command=...) says which one it is for"
        )
    return found[0] if found else "pretrain"


def _renamed(root: type[Config], key: str) -> str | None:
    return root.RENAMED.get(key) or RENAMED.get(key)


def _check_sections(raw: Any, root: type[Config], command: str) -> None:
    """Old key names, and keys of sections that the command does not read, by name."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a mapping, got {type(raw).__name__}")
    sections = [f.name for f in dataclasses.fields(root)]
    for name, body in raw.items():
        for key in body if isinstance(body, dict) else ():
            new = _renamed(root, f"{name}.{key}")
            if new is not None:
                raise ConfigError(f"{name}.{key} was renamed {new}")
        if name in sections:
            continue
        if any(name in (f.name for f in dataclasses.fields(r)) for r in ROOTS.values()):
            first = f"{name}.{next(iter(body))}" if isinstance(body, dict) and body else name
            raise ConfigError(
                f"{first}: the {name} section is not used by `vjepa {command}` "
                f"(it reads {', '.join(sections)})"
            )
        raise _unknown_key(str(name), "", sections)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _unknown_key(name: str, prefix: str, valid: list[str]) -> ConfigError:
    full = f"{prefix}{name}"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = (
        f"; did you mean {prefix}{close[0]}?"
        if close
        else f"; valid keys: {', '.join(prefix + v for v in valid)}"
    )
    return ConfigError(f"unknown config key {full}{hint}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Turn a nested dict into dataclass ``cls``, type-checking every leaf."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(raw).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in raw.items():
        if name not in fields:
            raise _unknown_key(str(name), prefix, list(fields))
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check (and gently convert: int -> float, list -> tuple) ``value`` against type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key} must have {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # a schema bug, not a user error


def validate(cfg: Config) -> None:
    """Every field's range check, each section's own checks, then the root's across sections."""
    for f in dataclasses.fields(cfg):
        _validate_section(getattr(cfg, f.name), f"{f.name}.")
    cfg.check()


def _validate_section(section: Any, prefix: str) -> None:
    """Range checks of ``section``'s fields, those of its nested sections, then its check()."""
    for g in dataclasses.fields(section):
        value = getattr(section, g.name)
        if dataclasses.is_dataclass(value):  # a nested section (data.retry)
            _validate_section(value, f"{prefix}{g.name}.")
            continue
        rng = g.metadata.get("range")
        if rng is not None and value is not None and not rng[0](value):
            raise ConfigError(f"{prefix}{g.name} {rng[1]}, got {value!r}")
    section.check()


def range_of(f: dataclasses.Field) -> str | None:
    """What a field's value must be (e.g. "must be > 0"), or None when it has no range check."""
    rng = f.metadata.get("range")
    return rng[1] if rng else None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), ready for YAML / JSON."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def from_dict(raw: dict[str, Any], command: str = "pretrain") -> Config:
    """Inverse of :func:`to_dict` (e.g. the config stored in a checkpoint).

    A config stored by an older version is upgraded, not refused: renamed keys move to their
    new names, and the sections of other commands (it held every section) are dropped.
    """
    root = _root(command)
    sections = {f.name for f in dataclasses.fields(root)}
    raw = copy.deepcopy(raw)
    for name, body in list(raw.items()):
        for key in list(body) if isinstance(body, dict) else ():
            new = _renamed(root, f"{name}.{key}")
            if new is not None:
                section, new_key = new.split(".")
                value = body.pop(key)
                if section in sections:
                    raw.setdefault(section, {}).setdefault(new_key, value)
    raw = {name: body for name, body in raw.items() if name in sections}
    cfg = _build(root, raw, prefix="")
    validate(cfg)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (every key, defaults included)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
