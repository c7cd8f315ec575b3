"""Detection metrics: Pascal VOC average precision at IoU 0.5.

VOC rules: per class, detections are ranked by score; each is matched to the ground truth of its image and
class that it overlaps most; it is a true positive when that IoU exceeds 0.5 and the ground truth was not
already taken by a higher-scoring detection (a second detection of it is a false positive); a match to a
``difficult`` ground truth counts neither way, and difficult objects are not counted as positives.
AP is the VOC2007 11-point interpolated AP (``use_07_metric=True``) or the area under the monotone
precision envelope (VOC2010+).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from singleshot.boxes import box_iou


def ap_from_pr(recall: Tensor, precision: Tensor, use_07_metric: bool = True) -> float:
    """AP of a precision/recall curve (points in rank order)."""
    if recall.numel() == 0:
        return 0.0
    if use_07_metric:
        total = 0.0
        for t in torch.linspace(0, 1, 11).tolist():
            above = precision[recall >= t - 1e-12]
            total += float(above.max()) if above.numel() else 0.0
        return total / 11
    r = torch.cat([torch.zeros(1, dtype=recall.dtype), recall, torch.ones(1, dtype=recall.dtype)])
    p = torch.cat([torch.zeros(1, dtype=precision.dtype), precision, torch.zeros(1, dtype=precision.dtype)])
    p = torch.flip(torch.cummax(torch.flip(p, [0]), 0).values, [0])  # monotone envelope
    changed = torch.nonzero(r[1:] != r[:-1]).flatten()
    return float(((r[changed + 1] - r[changed]) * p[changed + 1]).sum())


def _match_image(det: dict[str, Tensor], gt: dict[str, Tensor], iou_threshold: float) -> tuple[Tensor, Tensor]:
    """True-positive and ignore flags of one image's detections (any order); classes handled together."""
    n = det["scores"].numel()
    tp = torch.zeros(n, dtype=torch.bool)
    ignore = torch.zeros(n, dtype=torch.bool)
    if n == 0 or gt["labels"].numel() == 0:
        return tp, ignore
    iou = box_iou(det["boxes"].double(), gt["boxes"].double())
    iou = torch.where(det["labels"][:, None] == gt["labels"][None, :], iou, torch.full_like(iou, -1.0))
    best_iou, best_gt = iou.max(dim=1)
    hit = best_iou > iou_threshold
    difficult = gt.get("difficult", torch.zeros_like(gt["labels"], dtype=torch.bool))
    ignore = hit & difficult[best_gt]
    candidate = hit & ~ignore
    # the highest-scoring detection of each ground truth is the true positive; later ones are duplicates
    order = torch.argsort(det["scores"], descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)
    first = torch.full((gt["labels"].numel(),), n, dtype=torch.long)
    first.scatter_reduce_(0, best_gt[candidate], rank[candidate], reduce="amin")
    tp = candidate & (first[best_gt] == rank)
    return tp, ignore


@dataclass
class VOCResult:
    """Per-class AP (``nan`` for classes without positives) and their mean over classes with positives."""

    ap: list[float]
    num_positives: list[int]
    num_detections: list[int]

    @property
    def map(self) -> float:
        valid = [a for a, n in zip(self.ap, self.num_positives, strict=True) if n > 0]
        return sum(valid) / len(valid) if valid else float("nan")


def voc_ap(
    detections: Sequence[dict[str, Tensor]],
    ground_truths: Sequence[dict[str, Tensor]],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> VOCResult:
    """VOC AP per class over a dataset.

    Args:
        detections: per image ``{"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,) in 1..C}``.
        ground_truths: per image ``{"boxes" (G, 4) xyxy, "labels" (G,), "difficult" (G,) bool (optional)}``.
        num_classes: ``C``.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truths)} images")
    scores, labels, tps, ignores = [], [], [], []
    positives = torch.zeros(num_classes + 1, dtype=torch.long)
    for det, gt in zip(detections, ground_truths, strict=True):
        det = {k: det[k].detach().cpu() for k in ("boxes", "scores", "labels")}
        gt = {k: v.detach().cpu() for k, v in gt.items() if isinstance(v, Tensor)}
        tp, ignore = _match_image(det, gt, iou_threshold)
        scores.append(det["scores"].double())
        labels.append(det["labels"].long())
        tps.append(tp)
        ignores.append(ignore)
        counted = gt["labels"].long()
        if "difficult" in gt:
            counted = counted[~gt["difficult"].bool()]
        positives += torch.bincount(counted, minlength=num_classes + 1)[: num_classes + 1]
    score, label = torch.cat(scores), torch.cat(labels)
    tp, ignore = torch.cat(tps), torch.cat(ignores)

    ap, npos, ndet = [], [], []
    for c in range(1, num_classes + 1):
        keep = (label == c) & ~ignore
        order = torch.argsort(score[keep], descending=True, stable=True)
        hits = tp[keep][order].double()
        n = int(positives[c])
        npos.append(n)
        ndet.append(int(keep.sum()))
        if n == 0:
            ap.append(math.nan)
            continue
        ctp = torch.cumsum(hits, 0)
        cfp = torch.cumsum(1 - hits, 0)
        recall = ctp / n
        precision = ctp / torch.clamp(ctp + cfp, min=torch.finfo(torch.float64).eps)
        ap.append(ap_from_pr(recall, precision, use_07_metric))
    return VOCResult(ap=ap, num_positives=npos, num_detections=ndet)
