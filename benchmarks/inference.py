"""Inference speed per backend against torchvision's SSD on the same weights: ``singleshot benchmark`` for several
models in one go.

Usage: ``python benchmarks/inference.py [--weights W ...] [--source IMAGES] [--runs 20] [--batches 5]``

With ``--weights``, each file is timed as ``singleshot benchmark --weights W`` times it. Without, the three models
of the RESULTS table (``ssd300_vgg16``, ``ssdlite320_mobilenet_v3``, ``ssd_tiny160``, 3 classes) are built with
seeded random weights whose background logit is raised by 4, so that most default boxes score as background as
after training (an untrained head scores every box near 1/(C+1), which floods NMS with candidates).
``--source`` defaults to ``../shared/data/BCCD/JPEGImages`` (640x480 JPEGs) when present, else synthetic JPEGs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

from singleshot import build
from singleshot.speed import BACKENDS, BenchmarkConfig
from singleshot.speed import run as benchmark
from singleshot.weights import save_weights

BCCD_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "BCCD" / "JPEGImages"
MODELS = ("ssd300_vgg16", "ssdlite320_mobilenet_v3", "ssd_tiny160")


def trained_like_weights(name: str, folder: Path) -> Path:
    """Seeded weights of ``name`` (3 classes) with the background logit raised by 4, saved to ``folder``."""
    torch.manual_seed(0)
    model = build(name, num_classes=3).eval()
    for predictor in model.head.cls:
        conv = [m for m in predictor.modules() if isinstance(m, nn.Conv2d)][-1]
        conv.bias.data.view(-1, model.num_classes + 1)[:, 0] += 4.0
    path = folder / f"{name}.safetensors"
    save_weights(model, path, ["a", "b", "c"])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", default=None, help=".safetensors files (default: see above)")
    parser.add_argument("--source", default=str(BCCD_IMAGES) if BCCD_IMAGES.is_dir() else None)
    parser.add_argument("--runs", type=int, default=20, help="batch-1 latency measurements per backend")
    parser.add_argument("--batches", type=int, default=5, help="batch-8 throughput measurements per backend")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = args.weights or [trained_like_weights(name, Path(tmp)) for name in MODELS]
        for i, weights in enumerate(files):
            if i:
                print()
            config = BenchmarkConfig(weights=str(weights), source=args.source, runs=args.runs, batches=args.batches,
                                     backends=args.backends)  # fmt: skip
            benchmark(config)


if __name__ == "__main__":
    main()
