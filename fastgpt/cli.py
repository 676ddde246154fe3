"""The thin typed command lines of fastgpt-train and fastgpt-sample.

Each command's settings are one dataclass. Every field becomes a flag (`batch_size` ->
`--batch-size`) whose type comes from the annotation (int, float, str, bool -> --x/--no-x,
`X | None` also takes "none") and whose help and choices come from the field's metadata
(declare fields with `setting(...)`). The same converter reads TOML and YAML config files, so
a file and the flags accept exactly the same names and values. Flags that were not given stay
out of the parsed namespace (argparse.SUPPRESS): a layer only overrides what it names.

`run_command` is the shell around each console command: a user error prints one line on
stderr and exits 1 (no traceback), Ctrl-C exits 130, and the torch.distributed process group
is destroyed however the command ends.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from fastgpt.distributed import shutdown


class ConfigError(ValueError):
    """A setting that does not exist or does not fit (bad value, unknown preset, bad config file)."""


def setting(default, help: str, choices: Sequence[str] | None = None, metavar: str | None = None):
    """A dataclass field that carries its command-line help (and choices, metavar)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar})


def _field_types(cls) -> dict[str, tuple[type, bool]]:
    """{field name: (base type, accepts None)} from the dataclass's annotations."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            base = next(a for a in args if a is not type(None))
            out[name] = (base, type(None) in args)
        else:
            out[name] = (hint, False)
    return out


def convert(value: Any, base: type, optional: bool, name: str, choices=None):
    """`value` (a flag's string or a config file's value) as the field's type."""
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    try:
        if base is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                value = value.lower() in ("true", "yes", "on", "1")
            if not isinstance(value, bool):
                raise ValueError
        elif base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif base is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        else:
            value = base(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {'a' if base is not int else 'an'} {base.__name__}"
                          f"{' or none' if optional else ''}, got {value!r}") from None
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """A --flag for every field of dataclass `cls`, typed from its annotation."""
    types_ = _field_types(cls)
    for field in dataclasses.fields(cls):
        base, optional = types_[field.name]
        flag = "--" + field.name.replace("_", "-")
        help_ = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        if base is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, help=help_)
            continue

        def parse(text, base=base, optional=optional, name=flag, choices=choices):
            try:
                return convert(text, base, optional, name, choices)
            except ConfigError as e:
                raise argparse.ArgumentTypeError(str(e)) from None

        parse.__name__ = base.__name__
        metavar = field.metadata.get("metavar") or ("{" + ",".join(choices) + "}" if choices
                                                    else base.__name__.upper())
        parser.add_argument(flag, dest=field.name, type=parse, metavar=metavar, help=help_)


def dataclass_values(cls, values: dict, source: str) -> dict:
    """Check and convert {field: value} read from `source` (e.g. a config file) for `cls`."""
    types_ = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ConfigError(f"{source}: unknown setting {key!r}; known settings: {', '.join(fields)}")
        out[name] = convert(value, *types_[name], f"{source}: {key}", fields[name].metadata.get("choices"))
    return out


def load_config_file(path: str | os.PathLike) -> dict:
    """The top-level table of a TOML (.toml) or YAML (.yaml/.yml) config file."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError("YAML config files need pyyaml: pip install pyyaml "
                              "(or write the config as .toml)") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: "
                              f"{str(e).splitlines()[0]}") from None
    else:
        raise ConfigError(f"config file {str(path)!r}: use a .toml, .yaml or .yml file")
    if not isinstance(values, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of settings")
    return values


def run_command(prog: str, command: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None,
                user_errors: tuple[type[BaseException], ...]) -> int:
    """Run a console command; user errors print one line and return 1, Ctrl-C returns 130."""
    try:
        return command(argv)
    except user_errors as e:
        rank = os.environ.get("RANK", "0")   # under torchrun every rank reports; name the others
        print(f"{prog}: error{'' if rank == '0' else f' (rank {rank})'}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        shutdown()
