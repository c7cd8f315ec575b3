"""The ``singleshot`` command line: one table from sub-command to ``(config class, run function)``.

Each sub-command is a function a Python user can call, ``run(config) -> result``, beside its typed config, whose
fields are the command's flags (help lines and defaults included; :mod:`singleshot.config` makes the parser).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from singleshot import summary
from singleshot.analysis import command as analyze
from singleshot.config import CommandError, Config, add_config_flags, resolve
from singleshot.convert import command as convert
from singleshot.deploy import command as export
from singleshot.engine import command as train
from singleshot.evaluation import command as val
from singleshot.models import list_models
from singleshot.predict import command as predict
from singleshot.serve import command as serve
from singleshot.speed import command as benchmark
from singleshot.tools import data_report, prior_coverage
from singleshot.track import command as track
from singleshot.version import __version__


@dataclass(frozen=True)
class Command:
    """A sub-command: its config class (the flags), the function that runs it, a one-line summary for the list of
    commands and the description of its ``--help``."""

    config: type[Config]
    run: Callable[[Any], Any]
    summary: str
    description: str


COMMANDS: dict[str, Command] = {
    "models": Command(
        summary.ModelsConfig, summary.run, "list the model variants with their sizes and default boxes",
        f"Model variants: {', '.join(list_models())}.",
    ),
    "train": Command(
        train.TrainConfig, train.run, "train a detector (with no --data: on synthetic shapes)",
        "Train an SSD. --config loads a YAML recipe, and flags given after it override it.",
    ),
    "val": Command(
        val.ValConfig, val.run,
        "evaluate weights on a dataset split: VOC and COCO metrics, PR curves, confusion matrix",
        "Evaluate trained weights; writes metrics.json, predictions.json (COCO results), pr_curve.png, "
        "confusion_matrix.png and side-by-side images to runs/val/<name>.",
    ),
    "analyze": Command(
        analyze.AnalyzeConfig, analyze.run,
        "why a detector fails: TIDE errors, COCO analyze curves, misses no default box reaches, per-class thresholds",
        "Analyse the errors of weights (run on a split) or of a COCO results file against a split's ground truth; "
        "writes metrics.json, report.html (tables, plots, galleries of the worst errors) and the plots to "
        "runs/analyze/<name>, prints the summary, what to change and per-class score thresholds.",
    ),
    "predict": Command(
        predict.PredictConfig, predict.run,
        "detect objects in images, folders and videos; annotated copies and predictions.json",
        "Run trained weights on images, videos, folders or glob patterns; writes annotated images and videos, "
        "predictions.json (COCO results with file names and frames) and, when asked, YOLO labels and crops to "
        "runs/predict/<name>.",
    ),
    "track": Command(
        track.TrackConfig, track.run,
        "track objects across video, stream or image-sequence frames; count line crossings and zone occupancy",
        "Detect and track objects (ByteTrack, SORT or OC-SORT) in videos, live streams (webcam, RTSP, RTMP, UDP, "
        "HTTP; always the newest frame) or image sequences; writes the annotated video, tracks.json, MOT text, "
        "counts.csv and dwell.csv to runs/track/<name>; --eval scores against MOT ground truth (HOTA, MOTA, IDF1).",
    ),
    "export": Command(
        export.ExportConfig, export.run,
        "write trained weights as one ONNX file (optionally int8, optionally with NMS inside)",
        "Export weights to ONNX: normalisation, network, softmax and box decoding in one file with its metadata "
        "(singleshot.load and singleshot predict take it); --int8 quantises it and checks AP50 before writing.",
    ),
    "benchmark": Command(
        benchmark.BenchmarkConfig, benchmark.run,
        "time inference per backend (PyTorch fp32/bf16, ONNX Runtime fp32/int8) against torchvision's SSD",
        "Time JPEG-file-to-detections latency and batch throughput of each backend and of torchvision's SSD "
        "carrying the same weights, on the same images in the same run; prints ratios and the CPU's features.",
    ),
    "convert": Command(
        convert.ConvertConfig, convert.run,
        "convert torchvision, ssd.pytorch or Caffe SSD weights into a singleshot .safetensors file",
        "Convert detector weights from the wild (read without executing code) into our .safetensors with class "
        "names and default boxes in its metadata.",
    ),
    "priors": Command(
        prior_coverage.PriorsConfig, prior_coverage.run,
        "how well a model's default boxes cover a dataset's objects (coverage at IoU 0.5, per class and size)",
        "Measure, for every object after the training resize, its best default-box IoU: coverage, mean IoU and "
        "matches per class and size, the layer serving each size; plots of box shapes and IoU histograms.",
    ),
    "serve": Command(
        serve.ServeConfig, serve.run, "serve a detector over HTTP: POST /predict, health, metadata and a browser page",
        "Serve trained weights (.safetensors or .onnx) on FastAPI/uvicorn: POST /predict (multipart upload, JSON "
        "base64 or raw image bytes), GET /health/live, /health/ready, /metadata, and the page at /. Concurrent "
        "requests share forward passes (micro-batching); a full queue answers 429; loopback only by default.",
    ),
    "check-data": Command(
        data_report.CheckDataConfig, data_report.run,
        "read a dataset fully and report problems, class counts, box sizes",
        "Decode every image and annotation of a dataset; print the problems found and how they were handled.",
    ),
}  # fmt: skip  # one entry per command, its texts kept on few lines


def make_parser() -> argparse.ArgumentParser:
    """``singleshot``'s parser: a sub-parser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="singleshot", description="SSD: Single Shot MultiBox Detector")
    parser.add_argument("--version", action="version", version=f"singleshot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        config = command.config
        where = f"{config.__module__}.{config.__name__}"
        add_config_flags(
            sub.add_parser(
                name, help=command.summary, description=f"{command.description} Flags map to the fields of {where}."
            ),
            config,
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command; a bad value or a missing file ends with its message and exit status 2."""
    parser = make_parser()
    args = parser.parse_args(argv)
    command = COMMANDS[args.command]
    try:
        command.run(resolve(command.config, args))
    except CommandError as exc:
        print(f"singleshot {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyError, ValueError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        parser.exit(2, f"singleshot {args.command}: error: {message}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
