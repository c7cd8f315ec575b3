"""Typed configurations, the machinery: each field is a default, a command-line flag with its help line, and a YAML
key. The ground floor: it imports no other singleshot module.

Each command's own config lives beside the command (``TrainConfig`` in :mod:`singleshot.engine.recipe`,
``PredictConfig`` in :mod:`singleshot.predict.command`, ...). Every field is declared with :func:`setting` (its
default and one sentence of help), or with one of the shared fields below (one default each);
:func:`add_config_flags` turns the fields into flags, :func:`resolve` layers defaults, a ``--config`` YAML recipe
and the flags given, and :meth:`Config.from_dict` checks keys ("did you mean") and types.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

import yaml

C = TypeVar("C", bound="Config")


def setting(default: Any = MISSING, help: str = "", positional: bool = False) -> Any:
    """A config field: ``default`` (lists are copied per instance; MISSING makes it required), a help line, and
    whether the command line takes it as a positional argument instead of a ``--flag``."""
    metadata = {"help": help, "positional": positional}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


#: Fields that several commands share: name -> (default, help line), one of each. ``{task}`` is the command's.
SHARED: dict[str, tuple[Any, str]] = {
    "batch": (MISSING, "images per batch (per process under torchrun)"),
    "workers": (MISSING, "data-loading processes (0 loads in the main process)"),
    "device": ("auto", "auto (this process's GPU when there is one, else the CPU) | cpu | cuda | cuda:N"),
    "backend": (
        "auto",
        "what runs the network: pytorch, onnxruntime, openvino or auto (the fastest of those installed for these "
        "weights on this CPU, measured once and cached; a .safetensors is exported to ONNX on the fly)",
    ),
    "precision": (
        "auto",
        "fp32, bf16 (PyTorch autocast, where the CPU has native bf16), int8 (an int8 .onnx, or the checked "
        "<weights>-int8.onnx of singleshot export --int8 beside the weights) or auto; an .onnx runs at its own",
    ),
    "model_file": (
        MISSING,
        "model to {task}: .safetensors of singleshot train, .onnx of singleshot export, or what convert reads",
    ),
    "project": ("runs/{task}", "folder that holds the run folders"),
    "name": ("exp", "run folder name; a taken name gets a number (exp2, exp3, ...) unless --exist-ok"),
    "exist_ok": (False, "write into an existing run folder instead of making a new numbered one"),
    "train_split": ("train", "split to train on, where the dataset has named splits"),
    "val_split": ("val", "split to evaluate on, where the dataset has named splits"),
    "classes": (None, "class names in label order; none reads them from the data"),
    "slice": (
        None,
        "sliced inference for small objects: tiles of this side (pixels, native resolution); none: whole images",
    ),
    "overlap": (0.2, "overlap of neighbouring tiles, a share of the tile side in [0, 0.9] (with --slice)"),
    "full_image": (True, "with --slice, also run the whole image (objects larger than a tile)"),
    "timeout": (
        10.0,
        "seconds a live source (webcam, stream URL) may take to open or to send a frame before it "
        "counts as unreachable (at the start) or dropped (later)",
    ),
    "reconnect": (5, "attempts to reopen a live source after it drops (backoff 0.5 s doubling to 8 s); then it ends"),
    "merge": ("nms", "with --slice, how one object's detections in several tiles become one: nms drops, nmm merges"),
}


def shared(name: str, default: Any = MISSING, task: str = "") -> Any:
    """The shared field ``name`` of :data:`SHARED` (its own default unless ``default`` is given), for ``task``:
    ``batch: int = shared("batch", 16)``, ``project: str = shared("project", task="val")``."""
    preset, text = SHARED[name]
    value = preset if default is MISSING else default
    value = value.format(task=task) if isinstance(value, str) else value
    return setting(value, text.format(task=task))


@dataclass
class Config:
    """Shared behaviour of the typed configs: dicts, YAML, checks."""

    #: What the config is for, in its error messages ("invalid <what> config: ...").
    what: ClassVar[str] = "command"
    #: Whether the command takes ``--config RECIPE.yaml`` (the fields' names as keys; flags given override it).
    recipes: ClassVar[bool] = False
    #: Short flags for fields: ``{"-o": "output"}``.
    aliases: ClassVar[dict[str, str]] = {}

    def problems(self) -> list[str]:
        """Values that types alone do not rule out, each as ``name=value`` or a sentence."""
        return []

    def validate(self) -> Self:
        """Raise a ValueError listing every :meth:`problems`; returns self."""
        bad = self.problems()
        if bad:
            raise ValueError(f"invalid {self.what} config: {', '.join(bad)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Self:
        """Build from a mapping; unknown keys fail with a "did you mean", values are type-checked."""
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, known, n=1)
                hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ValueError(f"{source}: unknown key(s) {', '.join(hints)}")
        missing = [f.name for f in fields(cls) if _required(f) and f.name not in values]
        if missing:
            raise ValueError(f"{source}: missing required key(s) {', '.join(missing)}")
        hints = typing.get_type_hints(cls)
        checked = {k: _coerce(k, v, hints[k], source) for k, v in values.items()}
        return cls(**checked).validate()

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
        return cls.from_dict(values, source=str(path))

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _required(f: dataclasses.Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Check ``value`` against the field's type (ints are accepted for floats)."""
    if _matches(value, hint):
        return float(value) if hint is float and isinstance(value, int) else value
    raise ValueError(f"{source}: '{key}' must be {_describe(hint)}, got {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return "null" if hint is type(None) else hint.__name__


def add_config_flags(parser: argparse.ArgumentParser, cls: type[Config]) -> None:
    """One ``--flag`` per field of ``cls``, with the field's help line and default; flags not given stay absent
    from the parsed namespace (so a ``--config`` recipe is not overridden by defaults)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        required = _required(f)
        text = f.metadata.get("help", "")
        if not required:
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            text += f" (default: {default})"
        text = text.replace("%", "%%")  # argparse formats help with %
        if f.metadata.get("positional"):
            kind, nargs, _ = _flag_type(hint)
            nargs = None if required else ("*" if nargs else "?")
            parser.add_argument(f.name, type=kind, nargs=nargs, help=text)
            continue
        union = typing.get_origin(hint) in (types.UnionType, typing.Union)
        if hint is bool or (union and bool in typing.get_args(hint)):
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text
            )
            continue
        kind, nargs, choices = _flag_type(hint)
        parser.add_argument(
            flag, dest=f.name, type=kind, nargs=nargs, choices=choices, required=required,
            default=argparse.SUPPRESS, help=text,
        )  # fmt: skip  # argparse's keywords two lines, not seven
    for alias, name in cls.aliases.items():
        kind, nargs, choices = _flag_type(hints[name])
        parser.add_argument(
            alias, dest=name, type=kind, nargs=nargs, choices=choices, default=argparse.SUPPRESS,
            help=f"short for --{name.replace('_', '-')}",
        )  # fmt: skip  # as above
    if cls.recipes:
        parser.add_argument(
            "--config",
            help="YAML recipe: the flags' names with underscores as keys; flags given on the command line override it",
        )


def _flag_type(hint: Any) -> tuple[Any, str | None, list[Any] | None]:
    base = hint
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(base) is Literal:
        return str, None, list(typing.get_args(base))
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        if typing.get_origin(item) is Literal:
            return str, "+", list(typing.get_args(item))
        return item, "+", None
    return base, None, None


def resolve(cls: type[C], args: argparse.Namespace) -> C:
    """Defaults, then the ``--config`` YAML (when the command has one), then the flags given."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(cls.from_yaml(args.config).to_dict())
    names = {f.name for f in fields(cls)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return cls.from_dict(values, source="command line")


class CommandError(Exception):
    """A command's end with a message and an exit status (``singleshot`` prints the message and exits with it)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


__all__ = ["SHARED", "CommandError", "Config", "add_config_flags", "resolve", "setting", "shared"]
