"""The ``singleshot`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from singleshot import __version__
from singleshot.config import add_config_flags
from singleshot.models import build, list_models
from singleshot.summary import format_summary, summarize


def _cmd_models(args: argparse.Namespace) -> int:
    names = args.model or list_models()
    for i, name in enumerate(names):
        if i:
            print()
        print(format_summary(summarize(build(name, num_classes=args.num_classes))))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from singleshot.config import resolve
    from singleshot.engine import NonFiniteLossError
    from singleshot.train import TerminatedError, train

    config = resolve(args)
    try:
        train(config)
    except NonFiniteLossError as exc:
        print(f"singleshot train: stopped: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, TerminatedError):
        print("singleshot train: interrupted; resume with --resume <run folder>", file=sys.stderr)
        return 130
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from singleshot.data.inspect import check_data

    print(check_data(args.path, args.train_split, args.val_split, args.classes))
    return 0


def _cmd_val(args: argparse.Namespace) -> int:
    from singleshot.val import validate

    validate(
        args.weights,
        data=args.data,
        split=args.split,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        conf=args.conf,
        iou=args.iou,
        images=args.images,
        coco=not args.no_coco,
        synthetic=args.synthetic,
        project=args.project,
        name=args.name,
        exist_ok=args.exist_ok,
    )
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="singleshot", description="SSD: Single Shot MultiBox Detector")
    parser.add_argument("--version", action="version", version=f"singleshot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="list the model variants with their sizes and default boxes")
    models.add_argument("model", nargs="*", help=f"models to show (default: all of {', '.join(list_models())})")
    models.add_argument("--num-classes", type=int, default=20, help="object classes (default: 20, VOC)")
    models.set_defaults(func=_cmd_models)

    train = sub.add_parser(
        "train",
        help="train a detector (with no --data: on synthetic shapes)",
        description="Train an SSD. Flags map to the fields of singleshot.config.TrainConfig; "
        "--config loads a YAML recipe, and flags given after it override it.",
    )
    train.add_argument("--config", help="YAML recipe (keys: the flags below, with underscores)")
    add_config_flags(train)
    train.set_defaults(func=_cmd_train)

    val = sub.add_parser(
        "val",
        help="evaluate weights on a dataset split: VOC and COCO metrics, PR curves, confusion matrix",
        description="Evaluate trained weights; writes metrics.json, predictions.json (COCO results), "
        "pr_curve.png, confusion_matrix.png and side-by-side images to runs/val/<name>.",
    )
    val.add_argument("--weights", required=True, help=".safetensors weights written by singleshot train")
    val.add_argument("--data", help="dataset folder or file (default: held-out synthetic shapes)")
    val.add_argument("--split", default="val", help="split to evaluate (default: val)")
    val.add_argument("--batch", type=int, default=16)
    val.add_argument("--workers", type=int, default=0, help="data-loading processes")
    val.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    val.add_argument("--conf", type=float, default=0.25, help="score for the confusion matrix and drawings")
    val.add_argument("--iou", type=float, default=0.5, help="IoU for pairing in the confusion matrix")
    val.add_argument("--images", type=int, default=8, help="images drawn with predictions and ground truth")
    val.add_argument("--no-coco", action="store_true", help="skip the COCO metrics (pycocotools)")
    val.add_argument("--synthetic", type=int, default=200, help="synthetic images when no --data (default 200)")
    val.add_argument("--project", default="runs/val")
    val.add_argument("--name", default="exp")
    val.add_argument("--exist-ok", action="store_true", help="write into an existing run folder")
    val.set_defaults(func=_cmd_val)

    check = sub.add_parser("check-data", help="read a dataset fully and report problems, class counts, box sizes")
    check.add_argument("path", help="dataset folder or file (VOC, COCO or YOLO; detected automatically)")
    check.add_argument("--train-split", default="train")
    check.add_argument("--val-split", default="val")
    check.add_argument("--classes", nargs="+", help="class names in label order (default: from the data)")
    check.set_defaults(func=_cmd_check_data)
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
