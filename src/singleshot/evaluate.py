"""Detection metrics: Pascal VOC AP at IoU 0.5 (VOC2007 11-point and VOC2010+ all-point), COCO metrics through
``pycocotools``, a confusion matrix, and :class:`MetricReport`, which holds them and prints or saves them.

VOC rules (the devkit's ``VOCevaldet``): per class, detections are ranked by score; each is matched to the
ground truth of its image and class that it overlaps most; it is a true positive when that IoU exceeds 0.5 and
the ground truth was not already taken by a higher-scoring detection (a second detection of it is a false
positive); a match to a ``difficult`` ground truth counts neither way, and difficult objects are not counted as
positives. Ties in score keep dataset order (images in order, each image's detections as given), like the
devkit's stable sort of a results file. AP is the mean of the 11 interpolated precisions at recall
``0, 0.1, ..., 1`` (VOC2007), or the area under the monotone precision envelope (VOC2010+, "all-point").

Boxes are xyxy pixels. By default IoU treats them as continuous coordinates (a box from ``x1`` to ``x2`` is
``x2 - x1`` wide), as COCO and torchvision do. The VOC devkit reads boxes as inclusive pixel indices and adds 1
to every width and height; ``pixel_indices=True`` computes IoU that way, for figures exactly comparable with
the devkit's on VOC-format data (``singleshot val`` turns it on for VOC datasets).

COCO metrics come from ``pycocotools`` itself (``COCOeval``), fed in memory. ``difficult`` objects (VOC) and
crowd regions (COCO) become ``iscrowd`` regions, which COCO's rules ignore. Object areas for the small /
medium / large split are box areas (the official COCO annotations use segmentation areas, so APs/APm/APl of
COCO data can differ slightly from the official figures; AP, AP50, AP75 and AR over all areas do not).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from singleshot.boxes import box_area, box_iou, box_iou_pixel_indices, xyxy_to_xywh

#: Recall thresholds of the VOC2007 11-point AP, computed as the devkit's Python port computes them
#: (``np.arange(0, 1.1, 0.1)``: the 4th, 7th and 8th are a hair above 0.3, 0.6 and 0.7).
VOC07_RECALL_THRESHOLDS: tuple[float, ...] = tuple(np.arange(0.0, 1.1, 0.1).tolist())

#: Names of ``COCOeval.stats``, in its order.
COCO_STATS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

Detection = dict[str, Tensor]  # {"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,) in 1..C}
GroundTruth = dict[str, Tensor]  # {"boxes" (G, 4) xyxy, "labels" (G,) in 1..C, "difficult" (G,) bool, optional}


# -- VOC ------------------------------------------------------------------------------------------------
def ap_from_pr(recall: Tensor, precision: Tensor, use_07_metric: bool = True) -> float:
    """AP of a precision/recall curve given point by point in rank order (``(D,)`` each, float64)."""
    if recall.numel() == 0:
        return 0.0
    if use_07_metric:
        total = 0.0
        for t in VOC07_RECALL_THRESHOLDS:
            above = precision[recall >= t]
            total += float(above.max()) if above.numel() else 0.0
        return total / 11
    r = torch.cat([recall.new_zeros(1), recall, recall.new_ones(1)])
    p = torch.cat([precision.new_zeros(1), precision, precision.new_zeros(1)])
    p = torch.flip(torch.cummax(torch.flip(p, [0]), 0).values, [0])  # monotone envelope
    changed = torch.nonzero(r[1:] != r[:-1]).flatten()
    return float(((r[changed + 1] - r[changed]) * p[changed + 1]).sum())


@dataclass(frozen=True)
class Matches:
    """Every detection of a dataset with its VOC verdict, in dataset order (image by image).

    ``scores`` (D,) float64, ``labels`` (D,) int64, ``images`` (D,) image indices, ``tp`` (D,) true positive,
    ``ignored`` (D,) matched a difficult object; ``num_positives`` (C + 1,) non-difficult objects per label.
    """

    scores: Tensor
    labels: Tensor
    images: Tensor
    tp: Tensor
    ignored: Tensor
    num_positives: Tensor


def _best_ground_truth(det: Detection, gt: GroundTruth, pixel_indices: bool) -> tuple[Tensor, Tensor]:
    """For each detection, the IoU with and index of the most-overlapping ground truth of its class
    (IoU -1 and index 0 where the image has none of that class)."""
    n, g = det["labels"].numel(), gt["labels"].numel()
    if n == 0 or g == 0:
        return torch.full((n,), -1.0, dtype=torch.float64), torch.zeros(n, dtype=torch.long)
    iou = (box_iou_pixel_indices if pixel_indices else box_iou)(det["boxes"].double(), gt["boxes"].double())
    iou = iou.masked_fill(det["labels"][:, None] != gt["labels"][None, :], -1.0)
    return iou.max(dim=1)


def match_detections(
    detections: Sequence[Detection],
    ground_truths: Sequence[GroundTruth],
    num_classes: int,
    iou_threshold: float = 0.5,
    pixel_indices: bool = False,
) -> Matches:
    """Apply the VOC matching rules (module docstring) to a whole dataset.

    Only the IoU of each image is computed in a loop over images; ranking and the "first detection of each
    ground truth wins" rule run once over all detections of all classes (a ground truth belongs to one class,
    so ranking across classes gives the same order within each class).
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truths)} images")
    if not ground_truths:
        raise ValueError("no images to evaluate")
    scores, labels, images, best_ious, best_gts, difficult = [], [], [], [], [], []
    positives = torch.zeros(num_classes + 1, dtype=torch.long)
    offset = 0
    for i, (det, gt) in enumerate(zip(detections, ground_truths, strict=True)):
        det = {k: det[k].detach().cpu() for k in ("boxes", "scores", "labels")}
        gt_labels = gt["labels"].detach().cpu().long()
        gt_difficult = gt.get("difficult")
        gt_difficult = (
            torch.zeros_like(gt_labels, dtype=torch.bool) if gt_difficult is None else gt_difficult.cpu().bool()
        )
        if gt_labels.numel() and (gt_labels.min() < 1 or gt_labels.max() > num_classes):
            raise ValueError(f"image {i}: ground-truth labels must be in 1..{num_classes}, got {gt_labels.tolist()}")
        best_iou, best_gt = _best_ground_truth(
            det, {"boxes": gt["boxes"].detach().cpu(), "labels": gt_labels}, pixel_indices
        )
        scores.append(det["scores"].double())
        labels.append(det["labels"].long())
        images.append(torch.full((det["labels"].numel(),), i, dtype=torch.long))
        best_ious.append(best_iou)
        best_gts.append(best_gt + offset)
        difficult.append(gt_difficult)
        offset += gt_labels.numel()
        positives += torch.bincount(gt_labels[~gt_difficult], minlength=num_classes + 1)[: num_classes + 1]
    score, best_iou, best_gt = torch.cat(scores), torch.cat(best_ious), torch.cat(best_gts)
    is_difficult = torch.cat(difficult) if offset else torch.zeros(1, dtype=torch.bool)
    hit = best_iou > iou_threshold
    ignored = hit & is_difficult[best_gt.clamp(max=max(offset - 1, 0))]
    candidate = hit & ~ignored
    order = torch.argsort(score, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    first = torch.full((max(offset, 1),), order.numel(), dtype=torch.long)
    first.scatter_reduce_(0, best_gt[candidate], rank[candidate], reduce="amin")
    tp = candidate & (first[best_gt.clamp(max=max(offset - 1, 0))] == rank)
    return Matches(score, torch.cat(labels), torch.cat(images), tp, ignored, positives)


@dataclass
class PRCurve:
    """Precision and recall of one class after each detection in rank order (``ignored`` ones left out)."""

    recall: Tensor  # (D,) float64
    precision: Tensor  # (D,) float64
    scores: Tensor  # (D,) score of the detection at each point, descending

    def envelope(self, recall_points: int = 101) -> tuple[list[float], list[float]]:
        """Interpolated precision (the best precision at recall >= r) and the score reaching it, at
        ``recall_points`` evenly spaced recalls from 0 to 1 (COCO's 101 points by default); 0 where unreached."""
        grid = torch.linspace(0, 1, recall_points, dtype=torch.float64)
        if self.recall.numel() == 0:
            return [0.0] * recall_points, [0.0] * recall_points
        envelope = torch.flip(torch.cummax(torch.flip(self.precision, [0]), 0).values, [0])
        at = torch.searchsorted(self.recall, grid, side="left")
        reached = at < self.recall.numel()
        at = at.clamp(max=self.recall.numel() - 1)
        precision = torch.where(reached, envelope[at], torch.zeros_like(grid))
        score = torch.where(reached, self.scores[at], torch.zeros_like(grid))
        return precision.tolist(), score.tolist()


def pr_curve(matches: Matches, label: int) -> PRCurve:
    """The precision/recall curve of class ``label`` (1..C) from :func:`match_detections`."""
    keep = (matches.labels == label) & ~matches.ignored
    scores = matches.scores[keep]
    order = torch.argsort(scores, descending=True, stable=True)
    hits = matches.tp[keep][order].double()
    ctp = torch.cumsum(hits, 0)
    cfp = torch.cumsum(1 - hits, 0)
    n = int(matches.num_positives[label])
    recall = ctp / n if n > 0 else torch.zeros_like(ctp)
    precision = ctp / torch.clamp(ctp + cfp, min=torch.finfo(torch.float64).eps)
    return PRCurve(recall, precision, scores[order])


# -- COCO -----------------------------------------------------------------------------------------------
def coco_ground_truth(
    ground_truths: Sequence[GroundTruth],
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
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

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


def _coco_per_class_ap(evaluator) -> list[float]:
    """AP@[.5:.95] per category (all areas, 100 detections) from an accumulated ``COCOeval``; nan without data."""
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K)
    out = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k]
        p = p[p > -1]
        out.append(float(p.mean()) if p.size else math.nan)
    return out


# -- confusion matrix -----------------------------------------------------------------------------------
def confusion_matrix(
    detections: Sequence[Detection],
    ground_truths: Sequence[GroundTruth],
    num_classes: int,
    conf: float = 0.25,
    iou_threshold: float = 0.5,
) -> Tensor:
    """Counts ``M[true, predicted]``, ``(C + 1, C + 1)`` int64, index 0 = background.

    Detections scoring at least ``conf`` are paired with ground truths of any class, highest IoU first, each
    used once, when the IoU exceeds ``iou_threshold``. A paired object of class ``t`` predicted as ``p`` adds to
    ``M[t, p]``; an unpaired object to ``M[t, 0]`` (missed); an unpaired detection to ``M[0, p]`` (background
    detected). Difficult objects, and detections paired with them, are left out.
    """
    matrix = torch.zeros(num_classes + 1, num_classes + 1, dtype=torch.long)
    for det, gt in zip(detections, ground_truths, strict=True):
        keep = det["scores"] >= conf
        d_boxes, d_labels = det["boxes"][keep].double(), det["labels"][keep].long()
        g_labels = gt["labels"].long()
        difficult = gt.get("difficult", torch.zeros_like(g_labels, dtype=torch.bool)).bool()
        used_d = torch.zeros(len(d_labels), dtype=torch.bool)
        used_g = torch.zeros(len(g_labels), dtype=torch.bool)
        if len(d_labels) and len(g_labels):
            iou = box_iou(gt["boxes"].double(), d_boxes)
            pairs = torch.nonzero(iou > iou_threshold)
            order = torch.argsort(iou[pairs[:, 0], pairs[:, 1]], descending=True, stable=True)
            for g, d in pairs[order].tolist():
                if used_g[g] or used_d[d]:
                    continue
                used_g[g] = used_d[d] = True
                if not difficult[g]:
                    matrix[g_labels[g], d_labels[d]] += 1
        missed = ~used_g & ~difficult
        matrix[:, 0] += torch.bincount(g_labels[missed], minlength=num_classes + 1)[: num_classes + 1]
        matrix[0] += torch.bincount(d_labels[~used_d], minlength=num_classes + 1)[: num_classes + 1]
    return matrix


# -- the report -----------------------------------------------------------------------------------------
@dataclass
class MetricReport:
    """Per-class and mean metrics of one evaluation, with the PR curves behind them.

    ``ap50_07`` / ``ap50``: VOC AP at IoU 0.5, 11-point and all-point, ``nan`` for classes without positives
    (left out of the means). ``coco``: the :data:`COCO_STATS` summary and ``coco_ap``: AP@[.5:.95] per class,
    when COCO metrics were computed. ``timing``: seconds spent (``inference``, ``metrics``), when known.
    """

    class_names: list[str]
    num_images: int
    num_positives: list[int]
    num_detections: list[int]
    ap50_07: list[float]
    ap50: list[float]
    curves: list[PRCurve] = field(repr=False)
    coco: dict[str, float] | None = None
    coco_ap: list[float] | None = None
    timing: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _mean(values: Sequence[float]) -> float:
        valid = [v for v in values if not math.isnan(v)]
        return sum(valid) / len(valid) if valid else math.nan

    @property
    def map50_07(self) -> float:
        """Mean VOC2007 11-point AP at IoU 0.5 over classes with positives (the paper's VOC figure)."""
        return self._mean(self.ap50_07)

    @property
    def map50(self) -> float:
        """Mean all-point (VOC2010+) AP at IoU 0.5 over classes with positives."""
        return self._mean(self.ap50)

    def summary(self) -> dict[str, float]:
        """The headline figures: ``mAP50_voc07``, ``mAP50``, and the COCO stats when present."""
        out = {"mAP50_voc07": self.map50_07, "mAP50": self.map50}
        if self.coco is not None:
            out.update({f"coco_{k}": v for k, v in self.coco.items()})
        return out

    def table(self) -> str:
        """A plain-text table: one row per class, then the means and the COCO summary."""
        width = max([len("class"), len("all")] + [len(n) for n in self.class_names])
        cols = ["objects", "dets", "AP50 (07)", "AP50"] + (["AP"] if self.coco_ap is not None else [])
        lines = [f"{'class':<{width}}  " + "  ".join(f"{c:>9}" for c in cols)]

        def fmt(v: float) -> str:
            return f"{'-':>9}" if math.isnan(v) else f"{v:9.4f}"

        for k, name in enumerate(self.class_names):
            row = [
                f"{self.num_positives[k]:9d}",
                f"{self.num_detections[k]:9d}",
                fmt(self.ap50_07[k]),
                fmt(self.ap50[k]),
            ]
            if self.coco_ap is not None:
                row.append(fmt(self.coco_ap[k]))
            lines.append(f"{name:<{width}}  " + "  ".join(row))
        total = [f"{sum(self.num_positives):9d}", f"{sum(self.num_detections):9d}", fmt(self.map50_07), fmt(self.map50)]
        if self.coco is not None:
            total.append(fmt(self.coco["AP"]))
        lines.append(f"{'all':<{width}}  " + "  ".join(total))
        if self.coco is not None:
            lines.append("COCO  " + "  ".join(f"{k} {v:.4f}" for k, v in self.coco.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        """JSON-ready: means, per-class figures, and each class's interpolated PR curve at 101 recall points."""
        classes = []
        for k, name in enumerate(self.class_names):
            precision, score = self.curves[k].envelope()
            classes.append(
                {
                    "name": name,
                    "objects": self.num_positives[k],
                    "detections": self.num_detections[k],
                    "ap50_voc07": _json_float(self.ap50_07[k]),
                    "ap50": _json_float(self.ap50[k]),
                    **({"ap": _json_float(self.coco_ap[k])} if self.coco_ap is not None else {}),
                    "pr_curve": {
                        "recall": np.linspace(0, 1, 101).round(2).tolist(),
                        "precision": precision,
                        "score": score,
                    },
                }
            )
        return {
            "images": self.num_images,
            "summary": {k: _json_float(v) for k, v in self.summary().items()},
            "coco": self.coco,
            "timing": self.timing,
            "classes": classes,
        }

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else v


def evaluate_detections(
    detections: Sequence[Detection],
    ground_truths: Sequence[GroundTruth],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    coco: bool = True,
    image_ids: Sequence[int] | None = None,
    category_ids: Sequence[int] | None = None,
    pixel_indices: bool = False,
) -> MetricReport:
    """All metrics of ``detections`` against ``ground_truths`` (same image order, original image coordinates).

    Args:
        detections: per image ``{"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,) in 1..C}``.
        ground_truths: per image ``{"boxes" (G, 4) xyxy, "labels" (G,), "difficult" (G,) bool (optional)}``.
        class_names: the ``C`` names of labels 1..C.
        coco: also run ``pycocotools`` (AP@[.5:.95] and friends).
        image_ids, category_ids: ids written into the COCO structures (see :func:`coco_ground_truth`).
        pixel_indices: VOC devkit IoU (inclusive pixel indices) for the VOC figures (module docstring).
    """
    num_classes = len(class_names)
    matches = match_detections(detections, ground_truths, num_classes, iou_threshold, pixel_indices)
    curves = [pr_curve(matches, c) for c in range(1, num_classes + 1)]
    npos = matches.num_positives[1:].tolist()
    ap07, ap = _class_aps(curves, npos, True), _class_aps(curves, npos, False)
    ndet = [int(((matches.labels == c) & ~matches.ignored).sum()) for c in range(1, num_classes + 1)]
    report = MetricReport(list(class_names), len(ground_truths), npos, ndet, ap07, ap, curves)
    if coco:
        evaluator = coco_evaluate(
            coco_ground_truth(ground_truths, class_names, image_ids, category_ids),
            coco_results(detections, image_ids, category_ids),
        )
        report.coco = {k: float(v) for k, v in zip(COCO_STATS, evaluator.stats, strict=True)}
        report.coco_ap = _coco_per_class_ap(evaluator)
    return report


def voc_ap(
    detections: Sequence[Detection],
    ground_truths: Sequence[GroundTruth],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
    pixel_indices: bool = False,
) -> list[float]:
    """VOC AP per class (labels 1..C; ``nan`` where a class has no positives)."""
    matches = match_detections(detections, ground_truths, num_classes, iou_threshold, pixel_indices)
    curves = [pr_curve(matches, c) for c in range(1, num_classes + 1)]
    return _class_aps(curves, matches.num_positives[1:].tolist(), use_07_metric)


def _class_aps(curves: Sequence[PRCurve], num_positives: Sequence[int], use_07_metric: bool) -> list[float]:
    """AP of each class's curve; ``nan`` for classes without positives."""
    return [
        ap_from_pr(c.recall, c.precision, use_07_metric) if n else math.nan
        for c, n in zip(curves, num_positives, strict=True)
    ]


__all__ = [
    "COCO_STATS",
    "VOC07_RECALL_THRESHOLDS",
    "Matches",
    "MetricReport",
    "PRCurve",
    "ap_from_pr",
    "coco_evaluate",
    "coco_ground_truth",
    "coco_results",
    "confusion_matrix",
    "evaluate_detections",
    "match_detections",
    "pr_curve",
    "voc_ap",
]
