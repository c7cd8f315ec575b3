"""Typed configurations: each field is a default, a command-line flag with its help line, and a YAML key.

:class:`TrainConfig` is ``singleshot train``, :class:`ValConfig` is ``singleshot val``. Every field is declared
with :func:`setting` (its default and one sentence of help); :func:`add_config_flags` turns the fields into
flags, :func:`resolve` layers defaults, a ``--config`` YAML recipe and the flags given, and
:meth:`Config.from_dict` checks keys ("did you mean") and types.
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

from singleshot.data.transforms import PRESETS
from singleshot.onnx_format import CALIBRATION_METHODS, DEFAULT_CALIBRATION
from singleshot.predict.detector import CONF, IOU, MAX_DET

C = TypeVar("C", bound="Config")


def setting(default: Any = MISSING, help: str = "", positional: bool = False) -> Any:
    """A config field: ``default`` (lists are copied per instance; MISSING makes it required), a help line, and
    whether the command line takes it as a positional argument instead of a ``--flag``."""
    metadata = {"help": help, "positional": positional}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# -- fields shared by several commands (one default each) -----------------------------------------------
def _batch(default: int) -> Any:
    return setting(default, "images per batch (per process under torchrun)")


def _workers(default: int) -> Any:
    return setting(default, "data-loading processes (0 loads in the main process)")


def _device() -> Any:
    return setting("auto", "auto (this process's GPU when there is one, else the CPU) | cpu | cuda | cuda:N")


def _precision() -> Any:
    return setting(
        "fp32",
        "PyTorch inference precision: fp32, bf16 (autocast) or auto (bf16 where the hardware has native bf16 and it "
        "measures faster); an .onnx file runs at its own",
    )


def _model_file(task: str) -> Any:
    return setting(
        help=f"model to {task}: .safetensors of singleshot train, .onnx of singleshot export, or what convert reads"
    )


def _project(task: str) -> Any:
    return setting(f"runs/{task}", "folder that holds the run folders")


def _name() -> Any:
    return setting("exp", "run folder name; a taken name gets a number (exp2, exp3, ...) unless --exist-ok")


def _exist_ok() -> Any:
    return setting(False, "write into an existing run folder instead of making a new numbered one")


def _train_split() -> Any:
    return setting("train", "split to train on, where the dataset has named splits")


def _val_split() -> Any:
    return setting("val", "split to evaluate on, where the dataset has named splits")


def _classes() -> Any:
    return setting(None, "class names in label order; none reads them from the data")


@dataclass
class Config:
    """Shared behaviour of the typed configs: dicts, YAML, checks."""

    #: What the config is for, in its error messages ("invalid <what> config: ...").
    what: ClassVar[str] = "command"

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


@dataclass
class TrainConfig(Config):
    """Everything a training run depends on. Saved, resolved, as ``config.yaml`` in each run folder."""

    model: str = setting("ssdlite320_mobilenet_v3", "model variant (see `singleshot models`)")
    data: str | None = setting(
        None, "dataset folder or file (VOC, COCO or YOLO, detected); none trains on synthetic shapes"
    )
    train_split: str = _train_split()
    val_split: str = _val_split()
    classes: list[str] | None = _classes()
    synthetic_train: int = setting(2000, "synthetic shapes: number of training images")
    synthetic_val: int = setting(200, "synthetic shapes: number of held-out images (drawn from another seed)")
    epochs: int = setting(30, "passes over the training set")
    batch: int = _batch(16)
    imgsz: int | None = setting(None, "input side in pixels; none keeps the model's own (300, 320 or 512)")
    augment: Literal[PRESETS] | None = setting(  # type: ignore[valid-type]
        None, "augmentation preset; none picks ssdlite for SSDLite models and ssd for the others"
    )
    lr: float = setting(0.05, "peak learning rate of SGD (used as given, not scaled with the batch size)")
    momentum: float = setting(0.9, "SGD momentum (paper section 3)")
    weight_decay: float = setting(5e-4, "L2 weight decay on conv/linear weights, not norms or biases (paper, VGG16)")
    warmup_epochs: float = setting(1.0, "linear learning-rate warm-up from 0.1% of --lr, in epochs")
    schedule: Literal["cosine", "multistep"] = setting("cosine", "decay after warm-up: cosine to 1%, or multistep")
    milestones: list[float] = setting([2 / 3, 8 / 9], "multistep: where --gamma applies, as fractions of training")
    gamma: float = setting(0.1, "multistep: learning-rate factor at each milestone")
    amp: Literal["auto", "off", "bf16", "fp16"] = setting(
        "auto", "mixed precision: auto is fp16 on CUDA and off on the CPU; bf16 pays on CPUs with AMX/AVX512-BF16"
    )
    ema: bool | None = setting(
        None, "keep an exponential moving average of the weights; none: only when training from scratch"
    )
    ema_decay: float = setting(0.9998, "EMA decay per step (warmed up over the first few thousand steps)")
    grad_clip: float = setting(10.0, "clip the gradient norm to this (0 disables)")
    eval_every: int = setting(1, "epochs between evaluations (0: only after the last epoch)")
    workers: int = _workers(2)
    seed: int = setting(0, "seed of initialisation, shuffling and augmentation (runs repeat bit for bit)")
    device: str = _device()
    project: str = _project("train")
    name: str = _name()
    exist_ok: bool = _exist_ok()
    weights: str | None = setting(
        None, "initial weights: our .safetensors or any file singleshot convert reads; other classes are mapped by name"
    )
    default_boxes: str | dict | None = setting(
        None, "fitted default boxes: default_boxes.yaml of singleshot priors --optimize, or its mapping in a recipe"
    )
    base: str | None = setting(
        None, "ImageNet backbone: torchvision's vgg16(_bn)/mobilenet_v3_large .pth, reduced-fc .caffemodel, torchvision"
    )
    resume: str | None = setting(None, "continue a run exactly where it stopped: its folder or its last.pt")
    save_every_steps: int = setting(0, "also write last.pt every N steps (0: at the end of each epoch only)")
    max_steps: int = setting(0, "stop after this many optimiser steps in total, checkpoint kept (0: no limit)")
    time_budget: str | None = setting(
        None, "wall-clock budget (30m, 90s, 1.5h): the schedule spans it, training stops on time; --epochs caps it"
    )
    predict_images: int = setting(8, "held-out images drawn with predictions beside ground truth at the end")

    what: ClassVar[str] = "training"

    def problems(self) -> list[str]:
        positive = {"epochs": self.epochs, "batch": self.batch, "lr": self.lr}
        bad = [f"{k}={v}" for k, v in positive.items() if v <= 0]
        if self.imgsz is not None and self.imgsz < 32:
            bad.append(f"imgsz={self.imgsz}")
        if self.workers < 0 or self.eval_every < 0 or self.max_steps < 0 or self.save_every_steps < 0:
            bad.append("workers, eval_every, max_steps and save_every_steps must be >= 0")
        if not 0 < self.ema_decay < 1:
            bad.append(f"ema_decay={self.ema_decay}")
        if self.time_budget is not None:
            try:
                budget_seconds(self.time_budget)
            except ValueError as exc:
                bad.append(str(exc))
        return bad


def budget_seconds(text: str) -> float:
    """Seconds of a duration written ``90s``, ``30m``, ``1.5h`` or a plain number of seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise ValueError(f"time_budget={text!r} is not a duration like 90s, 30m or 1.5h") from None
    if not seconds > 0:
        raise ValueError(f"time_budget={text!r} must be positive")
    return seconds


@dataclass
class ValConfig(Config):
    """What ``singleshot val`` evaluates and where it writes."""

    weights: str = _model_file("evaluate")
    data: str | None = setting(None, "dataset folder or file; none evaluates on held-out synthetic shapes")
    split: str = setting("val", "split to evaluate (layouts without named splits: train or val of the hold-out)")
    batch: int = _batch(16)
    workers: int = _workers(0)
    device: str = _device()
    precision: Literal["fp32", "bf16", "auto"] = _precision()
    conf: float = setting(0.25, "score threshold of the confusion matrix and the drawn images (AP uses all)")
    iou: float = setting(0.5, "IoU above which the confusion matrix pairs a detection with an object")
    images: int = setting(8, "images drawn with predictions beside ground truth")
    coco: bool = setting(True, "compute the COCO metrics with pycocotools (--no-coco skips the slow part)")
    synthetic: int = setting(200, "held-out synthetic images to evaluate on when there is no --data")
    project: str = _project("val")
    name: str = _name()
    exist_ok: bool = _exist_ok()

    what: ClassVar[str] = "val"

    def problems(self) -> list[str]:
        bad = [f"{k}={v}" for k, v in {"batch": self.batch, "synthetic": self.synthetic}.items() if v < 1]
        if self.workers < 0 or self.images < 0:
            bad.append("workers and images must be >= 0")
        if not (0 <= self.conf <= 1 and 0 <= self.iou <= 1):
            bad.append(f"conf={self.conf} and iou={self.iou} must be in [0, 1]")
        return bad


@dataclass
class PredictConfig(Config):
    """What ``singleshot predict`` runs on, what it keeps and what it writes."""

    weights: str = _model_file("run")
    source: str = setting(help="image, video, folder (images and videos in it) or glob pattern")
    conf: float = setting(CONF, "least score of a detection kept")
    iou: float = setting(IOU, "IoU above which non-maximum suppression removes a lower-scoring box of its class")
    max_det: int = setting(MAX_DET, "most detections kept per image")
    classes: list[str] | None = setting(None, "keep only these classes (names, or labels 1..C); none keeps all")
    batch: int = setting(8, "images per forward pass (per process under torchrun)")
    device: str = _device()
    precision: Literal["fp32", "bf16", "auto"] = _precision()
    vid_stride: int = setting(1, "predict on every n-th video frame (the written video then has only those)")
    save: bool = setting(True, "write annotated images, videos and predictions.json (--no-save prints instead)")
    save_txt: bool = setting(False, "also write YOLO label files (class cx cy w h conf) to labels/")
    save_crop: bool = setting(False, "also write each detection's crop to crops/<class>/")
    line_width: int | None = setting(None, "box line width in pixels; none scales with the image")
    project: str = _project("predict")
    name: str = _name()
    exist_ok: bool = _exist_ok()

    what: ClassVar[str] = "predict"

    def problems(self) -> list[str]:
        bad = [
            f"{k}={v}"
            for k, v in {"batch": self.batch, "vid_stride": self.vid_stride, "max_det": self.max_det}.items()
            if v < 1
        ]
        if not (0 <= self.conf <= 1 and 0 <= self.iou <= 1):
            bad.append(f"conf={self.conf} and iou={self.iou} must be in [0, 1]")
        return bad


@dataclass
class ExportConfig(Config):
    """What ``singleshot export`` writes."""

    weights: str = setting(help="weights to export: .safetensors of singleshot train, or any file convert reads")
    format: Literal["onnx"] = setting("onnx", "file format: onnx (runs on ONNX Runtime, and on OpenVINO or TensorRT)")
    output: str | None = setting(None, "file to write; none: beside the weights (best.onnx, best-int8.onnx)")
    nms: bool = setting(False, "also put class-wise NMS in the graph (output: B x max_det x 6 rows), to use it alone")
    int8: bool = setting(False, "quantise to int8 (ONNX Runtime static QDQ), calibrated on --data's training split")
    data: str | None = setting(None, "dataset for --int8: calibration images from its train split, AP50 check on val")
    train_split: str = setting("train", "split whose images calibrate the int8 activation ranges")
    val_split: str = setting("val", "split on which AP50 is compared before and after int8 quantisation")
    calibration: int = setting(200, "training images used to calibrate the int8 activation ranges")
    calibrate: Literal[tuple(CALIBRATION_METHODS)] = setting(  # type: ignore[valid-type]
        DEFAULT_CALIBRATION, "how activation ranges are set from the calibration images (percentile: 99.999%)"
    )
    float_first_conv: bool = setting(False, "keep the first convolution (raw pixels in) in float when quantising")
    float_heads: bool = setting(False, "keep the prediction heads (scores and offsets out) in float when quantising")
    max_drop: float = setting(1.0, "refuse to write an int8 model whose val AP50 fell by more than this (points)")
    force: bool = setting(False, "write the int8 model even when its AP50 fell by more than --max-drop")
    batch: int = _batch(8)

    what: ClassVar[str] = "export"

    def problems(self) -> list[str]:
        bad = []
        if self.int8 and self.data is None:
            bad.append("--int8 needs --data: its train split calibrates the int8 ranges, its val split checks AP50")
        if self.calibration < 1 or self.batch < 1:
            bad.append(f"calibration={self.calibration} and batch={self.batch} must be >= 1")
        if self.max_drop < 0:
            bad.append(f"max_drop={self.max_drop} must be >= 0")
        return bad


BACKENDS = ("torch-fp32", "torch-bf16", "ort-fp32", "ort-int8")


@dataclass
class BenchmarkConfig(Config):
    """What ``singleshot benchmark`` times."""

    weights: str = setting(help=".safetensors weights of singleshot train (torchvision's model gets the same)")
    source: str | None = setting(
        None, "JPEG images (folder or glob) to time; none writes 16 synthetic 640x480 JPEGs to a temporary folder"
    )
    backends: list[Literal[BACKENDS]] = setting(list(BACKENDS), "backends to time (default: all)")  # type: ignore[valid-type]
    runs: int = setting(20, "batch-1 latency measurements per backend (images taken in turn)")
    batches: int = setting(5, "batch-8 throughput measurements per backend")
    batch: int = setting(8, "images per batch for the throughput figure")
    int8: str | None = setting(
        None, "an int8 .onnx of singleshot export --int8 to time; none quantises on the benchmark images (speed only)"
    )
    reference: bool = setting(True, "also time torchvision's SSD carrying the same weights (--no-reference skips it)")
    threads: int | None = setting(None, "CPU threads for every backend; none: one per physical core")

    what: ClassVar[str] = "benchmark"

    def problems(self) -> list[str]:
        counts = {"runs": self.runs, "batches": self.batches, "batch": self.batch}
        bad = [f"{k}={v} must be >= 1" for k, v in counts.items() if v < 1]
        if self.threads is not None and self.threads < 1:
            bad.append(f"threads={self.threads} must be >= 1")
        if not self.backends:
            bad.append("no backend to time")
        return bad


#: Weight formats ``singleshot convert`` reads (:mod:`singleshot.convert.files`).
WEIGHT_FORMATS = ("torchvision", "ssd-pytorch", "caffe", "singleshot")


@dataclass
class ConvertConfig(Config):
    """What ``singleshot convert`` reads and writes."""

    source: str = setting(
        help="weights to convert: .pth (torchvision, ssd.pytorch), .caffemodel, or torchvision:NAME", positional=True
    )
    output: str | None = setting(None, ".safetensors to write; none: beside the source (NAME.safetensors)")
    from_format: Literal[WEIGHT_FORMATS] | None = setting(  # type: ignore[valid-type]
        None, "the source's format; none detects it from the name and the keys"
    )
    classes: list[str] | None = setting(None, "class names, in the file's label order; none: the file's or VOC/COCO")

    what: ClassVar[str] = "convert"


@dataclass
class PriorsConfig(Config):
    """What ``singleshot priors`` measures: a model's default boxes against a dataset's objects."""

    data: str = setting(help="dataset folder or file (VOC, COCO or YOLO; detected automatically)")
    model: str = setting("ssd300_vgg16", "model variant whose default boxes are measured (see singleshot models)")
    imgsz: int | None = setting(None, "input side in pixels; none keeps the model's own (300, 320 or 512)")
    split: str = setting("train", "split whose objects are measured")
    classes: list[str] | None = _classes()
    optimize: bool = setting(False, "also fit sizes and aspect ratios to the objects; writes default_boxes.yaml")
    rounds: int = setting(2, "passes of the layer-by-layer search over sizes and ratios (with --optimize)")
    seed: int = setting(0, "seed of the object subsample when there are over 10000 objects (with --optimize)")
    project: str = _project("priors")
    name: str = _name()
    exist_ok: bool = _exist_ok()

    what: ClassVar[str] = "priors"


@dataclass
class ServeConfig(Config):
    """What ``singleshot serve`` serves, where, and its limits."""

    weights: str = _model_file("serve")
    host: str = setting("127.0.0.1", "address to listen on (loopback by default; another address wants --api-key)")
    port: int = setting(8000, "TCP port to listen on")
    max_batch: int = setting(8, "most requests gathered into one forward pass")
    max_wait_ms: float = setting(10.0, "longest a request waits for others to join its batch, milliseconds")
    max_queue: int = setting(64, "most requests waiting; beyond it the server answers 429 with Retry-After")
    max_upload_mb: float = setting(10.0, "largest request body (image upload), MiB; larger ones get 413")
    api_key: str | None = setting(
        None, "require 'Authorization: Bearer KEY' on every endpoint but /health/*; none: $SINGLESHOT_API_KEY if set"
    )
    device: str = _device()
    precision: Literal["fp32", "bf16", "auto"] = _precision()
    threads: int | None = setting(None, "CPU threads for the forward pass; none: one per physical core")

    what: ClassVar[str] = "serve"

    def problems(self) -> list[str]:
        bad = [f"{k}={v}" for k, v in {"max_batch": self.max_batch, "max_queue": self.max_queue}.items() if v < 1]
        if self.max_wait_ms < 0 or self.max_upload_mb <= 0 or not 0 <= self.port < 65536:
            bad.append(f"max_wait_ms={self.max_wait_ms} >= 0, max_upload_mb={self.max_upload_mb} > 0, port={self.port}")
        if self.threads is not None and self.threads < 1:
            bad.append(f"threads={self.threads}")
        return bad


@dataclass
class CheckDataConfig(Config):
    """What ``singleshot check-data`` reads."""

    path: str = setting(help="dataset folder or file (VOC, COCO or YOLO; detected automatically)", positional=True)
    train_split: str = _train_split()
    val_split: str = _val_split()
    classes: list[str] | None = _classes()


@dataclass
class ModelsConfig(Config):
    """What ``singleshot models`` shows."""

    model: list[str] = setting([], "models to show; none shows all", positional=True)
    num_classes: int = setting(20, "object classes, background excluded (20: VOC)")


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
        )  # fmt: skip


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


__all__ = [
    "CheckDataConfig",
    "Config",
    "ModelsConfig",
    "PredictConfig",
    "ServeConfig",
    "TrainConfig",
    "ValConfig",
    "add_config_flags",
    "resolve",
    "setting",
]
