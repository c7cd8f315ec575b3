"""Pascal VOC AP at IoU 0.5: VOC2007 11-point and VOC2010+ all-point.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from singleshot.boxes import box_iou, box_iou_pixel_indices
from singleshot.types import Detection, Target

#: Recall thresholds of the VOC2007 11-point AP, computed as the devkit's Python port computes them
#: (``np.arange(0, 1.1, 0.1)``: the 4th, 7th and 8th are a hair above 0.3, 0.6 and 0.7).
VOC07_RECALL_THRESHOLDS: tuple[float, ...] = tuple(np.arange(0.0, 1.1, 0.1).tolist())


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


def _best_ground_truth(det: Detection, gt: Target, pixel_indices: bool) -> tuple[Tensor, Tensor]:
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
    ground_truths: Sequence[Target],
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


def voc_ap(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
    pixel_indices: bool = False,
) -> list[float]:
    """VOC AP per class (labels 1..C; ``nan`` where a class has no positives)."""
    matches = match_detections(detections, ground_truths, num_classes, iou_threshold, pixel_indices)
    curves = [pr_curve(matches, c) for c in range(1, num_classes + 1)]
    return class_aps(curves, matches.num_positives[1:].tolist(), use_07_metric)


def class_aps(curves: Sequence[PRCurve], num_positives: Sequence[int], use_07_metric: bool) -> list[float]:
    """AP of each class's curve; ``nan`` for classes without positives."""
    return [
        ap_from_pr(c.recall, c.precision, use_07_metric) if n else math.nan
        for c, n in zip(curves, num_positives, strict=True)
    ]
