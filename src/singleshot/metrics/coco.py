"""COCO metrics through ``pycocotools`` itself (``COCOeval``), fed in memory.

COCO metrics come from ``pycocotools`` itself (``COCOeval``), fed in memory. ``difficult`` objects (VOC) and
crowd regions (COCO) become ``iscrowd`` regions, which COCO's rules ignore. Object areas for the small /
medium / large split are box areas (the official COCO annotations use segmentation areas, so APs/APm/APl of
COCO data can differ slightly from the official figures; AP, AP50, AP75 and AR over all areas do not).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from singleshot.boxes import box_area, xyxy_to_xywh
from singleshot.types import Detection, Target

#: Names of ``COCOeval.stats``, in its order.
COCO_STATS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_ground_truth(
    ground_truths: Sequence[Target],
    class_names: Sequence[str],
    image_ids: Sequence[int] | None = None,
    category_ids: Sequence[int] | None = None,
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> dict:
    """A COCO instances dict of ``ground_truths`` (``difficult`` objects become ``iscrowd`` regions).

    ``image_ids`` default to image indices, ``category_ids`` (one per label 1..C) to the labels themselves;
    ``image_sizes`` are ``(W, H)`` (COCO metrics do not use them; 0 when unknown).
    """
    image_ids = list(range(len(ground_truths))) if image_ids is None else list(image_ids)
    category_ids = list(range(1, len(class_names) + 1)) if category_ids is None else list(category_ids)
    images, annotations = [], []
    for i, gt in enumerate(ground_truths):
        w, h = image_sizes[i] if image_sizes is not None else (0, 0)
        images.append({"id": image_ids[i], "width": int(w), "height": int(h)})
        boxes = gt["boxes"].detach().cpu().double()
        difficult = gt.get("difficult", torch.zeros(len(boxes), dtype=torch.bool)).cpu().tolist()
        for box, area, label, crowd in zip(
            xyxy_to_xywh(boxes).tolist(), box_area(boxes).tolist(), gt["labels"].tolist(), difficult, strict=True
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,  # pycocotools treats id 0 as "unmatched"
                    "image_id": image_ids[i],
                    "category_id": category_ids[label - 1],
                    "bbox": box,
                    "area": area,
                    "iscrowd": int(crowd),
                }
            )
    categories = [{"id": cid, "name": name} for cid, name in zip(category_ids, class_names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_results(
    detections: Sequence[Detection], image_ids: Sequence[int] | None = None, category_ids: Sequence[int] | None = None
) -> list[dict]:
    """Detections in the COCO results format: ``{"image_id", "category_id", "bbox" [x, y, w, h], "score"}``."""
    out = []
    for i, det in enumerate(detections):
        image_id = i if image_ids is None else image_ids[i]
        boxes = xyxy_to_xywh(det["boxes"].detach().cpu().double()).tolist()
        for box, score, label in zip(boxes, det["scores"].tolist(), det["labels"].tolist(), strict=True):
            category = label if category_ids is None else category_ids[label - 1]
            out.append({"image_id": image_id, "category_id": category, "bbox": box, "score": score})
    return out


def coco_evaluate(ground_truth: dict, results: list[dict]):
    """Run ``pycocotools``' ``COCOeval`` (bbox) on in-memory ground truth and results; returns the evaluator
    after ``summarize()`` (its printing swallowed; ``stats`` holds :data:`COCO_STATS`)."""

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        if results:
            dt = gt.loadRes(results)
        else:  # loadRes rejects an empty list; no detections is a valid (all-zero) result
            dt = COCO()
            dt.dataset = {"images": ground_truth["images"], "categories": ground_truth["categories"], "annotations": []}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_per_class_ap(evaluator) -> list[float]:
    """AP@[.5:.95] per category (all areas, 100 detections) from an accumulated ``COCOeval``; nan without data."""
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K)
    out = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k]
        p = p[p > -1]
        out.append(float(p.mean()) if p.size else math.nan)
    return out
