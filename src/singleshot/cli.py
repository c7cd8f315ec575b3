"""The ``singleshot`` command line: a thin layer over functions a Python user can call. Every flag of ``train``
and ``val`` is a field of :class:`~singleshot.config.TrainConfig` / :class:`~singleshot.config.ValConfig`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from singleshot import __version__
from singleshot.config import (
    WEIGHT_FORMATS,
    BenchmarkConfig,
    CheckDataConfig,
    Config,
    ConvertConfig,
    ExportConfig,
    ModelsConfig,
    PredictConfig,
    PriorsConfig,
    ServeConfig,
    TrainConfig,
    ValConfig,
    add_config_flags,
    resolve,
)
from singleshot.models import build, list_models
from singleshot.summary import format_summary, summarize


def _cmd_models(args: argparse.Namespace) -> int:
    config = resolve(ModelsConfig, args)
    for i, name in enumerate(config.model or list_models()):
        if i:
            print()
        print(format_summary(summarize(build(name, num_classes=config.num_classes))))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from singleshot.engine.loop import NonFiniteLossError
    from singleshot.engine.trainer import TerminatedError, train

    config = resolve(TrainConfig, args)
    try:
        train(config)
    except NonFiniteLossError as exc:
        print(f"singleshot train: stopped: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, TerminatedError):
        print("singleshot train: interrupted; resume with --resume <run folder>", file=sys.stderr)
        return 130
    return 0


def _cmd_val(args: argparse.Namespace) -> int:
    from singleshot.engine.validation import validate

    validate(resolve(ValConfig, args))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from singleshot.predict.run import predict_to_folder

    predict_to_folder(resolve(PredictConfig, args))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from singleshot.export.run import export_model

    export_model(resolve(ExportConfig, args))
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from singleshot.benchmark import benchmark

    benchmark(resolve(BenchmarkConfig, args))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from singleshot.convert.files import convert_file
    from singleshot.weights import save_weights

    config = resolve(ConvertConfig, args)
    model, names, report = convert_file(config.source, config.from_format, config.classes)
    output = config.output or Path(config.source.removeprefix("torchvision:")).with_suffix(".safetensors").name
    if config.output is None and not config.source.startswith("torchvision:"):
        output = str(Path(config.source).with_suffix(".safetensors"))
    save_weights(model, output, names)
    print(f"{report} -> {output}")
    return 0


def _cmd_priors(args: argparse.Namespace) -> int:
    from singleshot.tools.prior_coverage import report_priors

    report_priors(resolve(PriorsConfig, args))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from singleshot.serve.server import run_server

    run_server(resolve(ServeConfig, args))
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from singleshot.tools.data_report import check_data

    config = resolve(CheckDataConfig, args)
    print(check_data(config.path, config.train_split, config.val_split, config.classes))
    return 0


def _command(
    sub: argparse._SubParsersAction,
    name: str,
    run: Callable[[argparse.Namespace], int],
    config: type[Config],
    summary: str,
    description: str,
) -> argparse.ArgumentParser:
    """A subcommand whose arguments are the fields of ``config``."""
    parser = sub.add_parser(
        name,
        help=summary,
        description=f"{description} Flags map to the fields of {config.__module__}.{config.__name__}.",
    )
    add_config_flags(parser, config)
    parser.set_defaults(func=run)
    return parser


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="singleshot", description="SSD: Single Shot MultiBox Detector")
    parser.add_argument("--version", action="version", version=f"singleshot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _command(
        sub, "models", _cmd_models, ModelsConfig, "list the model variants with their sizes and default boxes",
        f"Model variants: {', '.join(list_models())}.",
    )  # fmt: skip
    train = _command(
        sub, "train", _cmd_train, TrainConfig, "train a detector (with no --data: on synthetic shapes)",
        "Train an SSD. --config loads a YAML recipe, and flags given after it override it.",
    )  # fmt: skip
    train.add_argument(
        "--config",
        help="YAML recipe: the flags' names with underscores as keys; flags given on the command line override it",
    )
    _command(
        sub, "val", _cmd_val, ValConfig,
        "evaluate weights on a dataset split: VOC and COCO metrics, PR curves, confusion matrix",
        "Evaluate trained weights; writes metrics.json, predictions.json (COCO results), pr_curve.png, "
        "confusion_matrix.png and side-by-side images to runs/val/<name>.",
    )  # fmt: skip
    _command(
        sub, "predict", _cmd_predict, PredictConfig,
        "detect objects in images, folders and videos; annotated copies and predictions.json",
        "Run trained weights on images, videos, folders or glob patterns; writes annotated images and videos, "
        "predictions.json (COCO results with file names and frames) and, when asked, YOLO labels and crops to "
        "runs/predict/<name>.",
    )  # fmt: skip
    _command(
        sub, "export", _cmd_export, ExportConfig,
        "write trained weights as one ONNX file (optionally int8, optionally with NMS inside)",
        "Export weights to ONNX: normalisation, network, softmax and box decoding in one file with its metadata "
        "(singleshot.load and singleshot predict take it); --int8 quantises it and checks AP50 before writing.",
    )  # fmt: skip
    _command(
        sub, "benchmark", _cmd_benchmark, BenchmarkConfig,
        "time inference per backend (PyTorch fp32/bf16, ONNX Runtime fp32/int8) against torchvision's SSD",
        "Time JPEG-file-to-detections latency and batch throughput of each backend and of torchvision's SSD "
        "carrying the same weights, on the same images in the same run; prints ratios and the CPU's features.",
    )  # fmt: skip
    convert = _command(
        sub, "convert", _cmd_convert, ConvertConfig,
        "convert torchvision, ssd.pytorch or Caffe SSD weights into a singleshot .safetensors file",
        "Convert detector weights from the wild (read without executing code) into our .safetensors with class "
        "names and default boxes in its metadata.",
    )  # fmt: skip
    convert.add_argument("-o", dest="output", help="short for --output")
    convert.add_argument("--from", dest="from_format", choices=WEIGHT_FORMATS, help="short for --from-format")
    _command(
        sub, "priors", _cmd_priors, PriorsConfig,
        "how well a model's default boxes cover a dataset's objects (coverage at IoU 0.5, per class and size)",
        "Measure, for every object after the training resize, its best default-box IoU: coverage, mean IoU and "
        "matches per class and size, the layer serving each size; plots of box shapes and IoU histograms.",
    )  # fmt: skip
    _command(
        sub, "serve", _cmd_serve, ServeConfig,
        "serve a detector over HTTP: POST /predict, health, metadata and a browser page",
        "Serve trained weights (.safetensors or .onnx) on FastAPI/uvicorn: POST /predict (multipart upload, JSON "
        "base64 or raw image bytes), GET /health/live, /health/ready, /metadata, and the page at /. Concurrent "
        "requests share forward passes (micro-batching); a full queue answers 429; loopback only by default.",
    )  # fmt: skip
    _command(
        sub, "check-data", _cmd_check_data, CheckDataConfig,
        "read a dataset fully and report problems, class counts, box sizes",
        "Decode every image and annotation of a dataset; print the problems found and how they were handled.",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (KeyError, ValueError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        parser.exit(2, f"singleshot {args.command}: error: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
