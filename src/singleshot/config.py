"""The typed training configuration: defaults, YAML recipes, command-line flags, validation."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml


@dataclass
class TrainConfig:
    """Everything a training run depends on. Saved, resolved, as ``config.yaml`` in each run folder."""

    model: str = "ssdlite320_mobilenet_v3"
    data: str | None = None  # dataset path; None trains on synthetic shapes
    train_split: str = "train"
    val_split: str = "val"
    classes: list[str] | None = None  # class names in label order; None reads them from the data
    synthetic_train: int = 2000  # synthetic shapes: training images
    synthetic_val: int = 200  # synthetic shapes: held-out images (another seed)
    epochs: int = 30
    batch: int = 16
    imgsz: int | None = None  # input side; None keeps the model's (300, 320, 512)
    augment: str | None = None  # ssd | ssdlite | eval; None picks the model family's preset
    lr: float = 0.05  # peak learning rate for a batch of 16 (scaled linearly with the global batch)
    momentum: float = 0.9
    weight_decay: float = 5e-4  # paper section 3 (VGG16); not applied to norms and biases
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "multistep"] = "cosine"
    milestones: list[float] = field(default_factory=lambda: [2 / 3, 8 / 9])  # multistep: fractions of training
    gamma: float = 0.1
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    ema: bool | None = None  # None: on when training from scratch
    ema_decay: float = 0.9998
    grad_clip: float = 10.0  # max gradient norm; 0 disables
    eval_every: int = 1  # epochs between evaluations; 0 evaluates only at the end
    workers: int = 2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False  # reuse runs/train/<name> instead of making <name>2, <name>3, ...
    weights: str | None = None  # initial weights (.safetensors of ours, or a torchvision SSD state dict)
    resume: str | None = None  # a run folder or its last.pt
    save_every_steps: int = 0  # also checkpoint every N steps (0: at epoch ends only)
    max_steps: int = 0  # stop after this many steps in total (0: no limit)
    predict_images: int = 8  # annotated held-out images written at the end

    def validate(self) -> TrainConfig:
        """Check values that types alone do not; returns self."""
        positive = {"epochs": self.epochs, "batch": self.batch, "lr": self.lr}
        bad = [f"{k}={v}" for k, v in positive.items() if v <= 0]
        if self.imgsz is not None and self.imgsz < 32:
            bad.append(f"imgsz={self.imgsz}")
        if self.workers < 0 or self.eval_every < 0 or self.max_steps < 0 or self.save_every_steps < 0:
            bad.append("workers, eval_every, max_steps and save_every_steps must be >= 0")
        if not 0 < self.ema_decay < 1:
            bad.append(f"ema_decay={self.ema_decay}")
        if bad:
            raise ValueError(f"invalid training config: {', '.join(bad)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys fail with a "did you mean", values are type-checked."""
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, known, n=1)
                hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ValueError(f"{source}: unknown key(s) {', '.join(hints)}")
        hints = typing.get_type_hints(cls)
        checked = {k: _coerce(k, v, hints[k], source) for k, v in values.items()}
        return cls(**checked).validate()

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
        return cls.from_dict(values, source=str(path))

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


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


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field; flags not given stay absent from the parsed namespace."""
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        hint = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        union = typing.get_origin(hint) in (types.UnionType, typing.Union)
        if hint is bool or (union and bool in typing.get_args(hint)):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
            continue
        kind, nargs, choices = _flag_type(hint)
        parser.add_argument(
            flag, dest=f.name, type=kind, nargs=nargs, choices=choices, default=argparse.SUPPRESS, help=_help(f)
        )


def _flag_type(hint: Any) -> tuple[Any, str | None, list[Any] | None]:
    base = hint
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(base) is Literal:
        return str, None, list(typing.get_args(base))
    if typing.get_origin(base) is list:
        return typing.get_args(base)[0], "+", None
    return base, None, None


def _help(f: dataclasses.Field) -> str:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return f"(default: {default})"


def resolve(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the ``--config`` YAML, then the flags given on the command line."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(TrainConfig.from_yaml(args.config).to_dict())
    names = {f.name for f in fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values, source="command line")
