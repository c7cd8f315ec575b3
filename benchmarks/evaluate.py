"""Evaluation speed: our VOC AP (vectorised) and COCO metrics against a per-detection VOC implementation
(the devkit's procedure in plain Python, as most SSD ports carry it) on the same seeded detections.

    .venv/bin/python benchmarks/evaluate.py --images 5000 --detections 200

Prints seconds and images/s for each, the speed-up over the per-detection reference, and checks that both
give the same all-point AP.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics"))
from test_metrics import reference_voc_ap

from singleshot.metrics import coco_evaluate, coco_ground_truth, coco_results, voc_ap


def make_data(images: int, detections: int, classes: int, seed: int = 0):
    """Per image: 2-20 objects; ``detections`` boxes, most near an object (right or wrong class), the rest random."""
    g = torch.Generator().manual_seed(seed)
    dets, gts = [], []
    for _ in range(images):
        n = int(torch.randint(2, 21, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 400
        wh = 10 + torch.rand(n, 2, generator=g) * 150
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, classes + 1, (n,), generator=g)
        difficult = torch.rand(n, generator=g) < 0.05
        near = torch.randint(0, n, (detections,), generator=g)
        jitter = torch.randn(detections, 4, generator=g) * 0.15 * wh[near].repeat(1, 2)
        d_boxes = boxes[near] + jitter
        random_box = torch.rand(detections, generator=g) < 0.5
        rxy = torch.rand(detections, 2, generator=g) * 400
        d_boxes[random_box] = torch.cat([rxy, rxy + 10 + torch.rand(detections, 2, generator=g) * 150], 1)[random_box]
        d_labels = torch.where(
            torch.rand(detections, generator=g) < 0.8,
            labels[near],
            torch.randint(1, classes + 1, (detections,), generator=g),
        )
        dets.append({"boxes": d_boxes, "scores": torch.rand(detections, generator=g), "labels": d_labels})
        gts.append({"boxes": boxes, "labels": labels, "difficult": difficult})
    return dets, gts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=200)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--reference-classes", type=int, default=2, help="classes timed with the slow reference")
    parser.add_argument("--no-coco", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    dets, gts = make_data(args.images, args.detections, args.classes)
    n = args.images
    print(f"{n} images x {args.detections} detections, {args.classes} classes (torch {torch.__version__})")

    t = time.perf_counter()
    ours = voc_ap(dets, gts, args.classes, use_07_metric=False)
    ours_s = time.perf_counter() - t
    print(f"ours, VOC AP (all classes)      {ours_s:8.2f} s  {n / ours_s:9.0f} img/s")

    k = args.reference_classes
    t = time.perf_counter()
    reference = [reference_voc_ap(dets, gts, c) for c in range(1, k + 1)]
    ref_s = (time.perf_counter() - t) * args.classes / k
    print(f"per-detection reference, VOC AP {ref_s:8.2f} s  {n / ref_s:9.0f} img/s  (timed on {k} classes, scaled)")
    worst = max(abs(a - b) for a, b in zip(ours[:k], reference, strict=True))
    print(f"speed-up {ref_s / ours_s:.1f}x; largest AP difference on the reference's classes {worst:.1e}")

    if not args.no_coco:
        names = [f"c{i}" for i in range(1, args.classes + 1)]
        t = time.perf_counter()
        evaluator = coco_evaluate(coco_ground_truth(gts, names), coco_results(dets))
        coco_s = time.perf_counter() - t
        print(f"COCO metrics (pycocotools)      {coco_s:8.2f} s  {n / coco_s:9.0f} img/s  AP {evaluator.stats[0]:.3f}")


if __name__ == "__main__":
    main()
