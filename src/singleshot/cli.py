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
