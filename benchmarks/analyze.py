"""Error-analysis speed: ``analyze_detections`` (everything ``singleshot analyze`` computes) on many images, and its
two costliest parts side by side with their references on the same detections: our TIDE against ``tidecv`` (whose
figures it must equal) and our COCO analyze curves' matching against ``pycocotools``' ``COCOeval`` at the curves'
three IoU thresholds (.75, .5, .1; the official analyze runs more evaluations than that).

    .venv/bin/python benchmarks/analyze.py --images 5000 --detections 100 --reference-images 1000

Seeded data of ``benchmarks/evaluate.py`` (2-20 objects per image, 20 classes, 5% crowd, half the detections near
an object). Prints the CPU's features, seconds per part, and the speed-ups over the references.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import make_data

from singleshot.analysis import analyze_detections, coco_curves, tide_errors
from singleshot.cpu import cpu_features
from singleshot.metrics import coco_ground_truth, coco_results


def tidecv_errors(detections: list, ground_truths: list, details: bool = False) -> tuple:
    """tidecv's AP50 and main dAPs on the same data (difficult or crowd objects as ignore regions of their class);
    with ``details``, also its special dAPs and its error counts."""
    import tidecv  # a development dependency, the reference

    gt, preds = tidecv.Data("gt"), tidecv.Data("preds")
    for i, (det, target) in enumerate(zip(detections, ground_truths, strict=True)):
        gt.add_image(i, str(i))
        for box, label, crowd in zip(
            target["boxes"].tolist(), target["labels"].tolist(), target["difficult"].tolist(), strict=True
        ):
            xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            (gt.add_ignore_region if crowd else gt.add_ground_truth)(i, label, box=xywh)
        for box, score, label in zip(
            det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True
        ):
            preds.add_detection(i, label, score, box=[box[0], box[1], box[2] - box[0], box[3] - box[1]])
    tide = tidecv.TIDE()
    run = tide.evaluate(gt, preds, mode=tidecv.TIDE.BOX)
    errors = tide.get_all_errors()
    if not details:
        return run.ap, errors["main"]["preds"]
    counts = {t.short_name: len(v) for t, v in run.error_dict.items()}
    return run.ap, errors["main"]["preds"], errors["special"]["preds"], counts


def cocoeval_three_thresholds(detections: list, ground_truths: list, class_names: list[str]) -> np.ndarray:
    """``COCOeval`` precision at IoU .75, .5 and .1 (the C75, C50 and Loc curves before averaging)."""
    from pycocotools.coco import COCO  # the reference
    from pycocotools.cocoeval import COCOeval  # the reference

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = coco_ground_truth(ground_truths, class_names)
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(coco_results(detections)), "bbox")
        evaluator.params.iouThrs = np.array([0.75, 0.5, 0.1])
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval["precision"]


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the seconds it took."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--reference-images", type=int, default=1000, help="images of the side-by-side comparison")
    args = parser.parse_args()
    print(cpu_features().describe())
    names = [f"class{k}" for k in range(1, args.classes + 1)]
    detections, ground_truths = make_data(args.images, args.detections, args.classes)
    analysis, seconds = timed(lambda: analyze_detections(detections, ground_truths, names))
    parts = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in analysis.timing.items())
    print(f"analyze_detections, {args.images} images x {args.detections} detections: {seconds:.1f} s ({parts})")

    n = args.reference_images
    dets, gts = detections[:n], ground_truths[:n]
    ours, ours_s = timed(tide_errors, dets, gts, names)
    (ref_ap, ref_main), ref_s = timed(tidecv_errors, dets, gts)
    worst = max(abs(ours.main[k] - v) for k, v in ref_main.items())
    print(
        f"TIDE on {n} images: ours {ours_s:.2f} s, tidecv {ref_s:.2f} s -> {ref_s / ours_s:.1f}x faster; "
        f"AP50 {ours.ap:.6f} vs {ref_ap:.6f}, largest dAP difference {worst:.2e}"
    )
    curves, curves_s = timed(coco_curves, dets, gts, names)
    precision, coco_s = timed(cocoeval_three_thresholds, dets, gts, names)
    c75 = precision[0, :, :, 0, 2]
    ours_c75 = curves.per_class["all"]["C75"].T
    print(
        f"COCO analyze curves on {n} images: ours (7 curves x 4 areas) {curves_s:.2f} s, COCOeval at 3 IoUs "
        f"{coco_s:.2f} s -> {coco_s / curves_s:.1f}x; C75 largest difference {np.abs(c75 - ours_c75).max():.2e}"
    )


if __name__ == "__main__":
    main()
