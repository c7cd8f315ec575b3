"""The ``singleshot`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from singleshot import __version__
from singleshot.models import build, list_models
from singleshot.summary import format_summary, summarize


def _cmd_models(args: argparse.Namespace) -> int:
    names = args.model or list_models()
    for i, name in enumerate(names):
        if i:
            print()
        print(format_summary(summarize(build(name, num_classes=args.num_classes))))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="singleshot", description="SSD: Single Shot MultiBox Detector")
    parser.add_argument("--version", action="version", version=f"singleshot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="list the model variants with their sizes and default boxes")
    models.add_argument("model", nargs="*", help=f"models to show (default: all of {', '.join(list_models())})")
    models.add_argument("--num-classes", type=int, default=20, help="object classes (default: 20, VOC)")
    models.set_defaults(func=_cmd_models)
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
