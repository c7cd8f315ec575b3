"""Sliced inference speed: tiles per second of ``Detector.predict(slice=...)`` on large images against the same
backend's plain forward throughput (images per second of ``Detector.detect`` on batches of images of the tile's
size), measured side by side in the same run.

    .venv/bin/python benchmarks/small_objects.py --model ssdlite320_mobilenet_v3 --tile 320 --images 4

(The accuracy half of issue 21's benchmark -- whole-image against tile training on a synthetic set of large
images with small objects -- is still to come.)
"""

from __future__ import annotations

import argparse
import time

import torch

from singleshot.cpu import cpu_features
from singleshot.data.synthetic import SyntheticShapes
from singleshot.models import build
from singleshot.predict import Detector
from singleshot.predict.slicing import SliceSettings, windows_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ssdlite320_mobilenet_v3")
    parser.add_argument("--tile", type=int, default=320)
    parser.add_argument("--images", type=int, default=4, help="1920x1080 images sliced")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    print(cpu_features().describe(), f"torch threads {torch.get_num_threads()}")
    torch.manual_seed(0)
    model = build(args.model, 3, image_size=args.tile)
    detector = Detector(model, list(SyntheticShapes.classes))
    large = [SyntheticShapes(1, (1080, 1920), seed=k)[0][0] for k in range(args.images)]
    tiles = [SyntheticShapes(1, (args.tile, args.tile), seed=k)[0][0] for k in range(args.batch)]
    slicing = SliceSettings((args.tile, args.tile), 0.2, full_image=False)
    per_image = len(windows_of(1080, 1920, slicing))
    detector.predict(large[0], slice=args.tile, full_image=False, batch=args.batch)  # warm-up
    detector.detect(tiles)
    rounds = max(1, per_image * args.images // args.batch)
    start = time.perf_counter()
    for _ in range(rounds):
        detector.detect(tiles)
    plain = rounds * args.batch / (time.perf_counter() - start)
    start = time.perf_counter()
    results = detector.predict(large, slice=args.tile, overlap=0.2, full_image=False, batch=args.batch)
    sliced = sum(r.speed["tiles"] for r in results) / (time.perf_counter() - start)
    print(
        f"{args.model} at {args.tile}: plain forward {plain:.1f} images/s (batch {args.batch}); sliced 1920x1080 "
        f"({per_image} tiles each) {sliced:.1f} tiles/s -> {sliced / plain:.2f} of plain, "
        f"{1e3 * per_image / sliced:.0f} ms per image"
    )


if __name__ == "__main__":
    main()
