"""A detection confusion matrix: true class against predicted class, with background."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from singleshot.boxes import box_iou
from singleshot.types import Detection, Target


def confusion_matrix(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    num_classes: int,
    *,
    conf: float,
    iou: float,
) -> Tensor:
    """Counts ``M[true, predicted]``, ``(C + 1, C + 1)`` int64, index 0 = background.

    Detections scoring at least ``conf`` are paired with ground truths of any class, highest IoU first, each
    used once, when the IoU exceeds ``iou``. A paired object of class ``t`` predicted as ``p`` adds to
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
            overlaps = box_iou(gt["boxes"].double(), d_boxes)
            pairs = torch.nonzero(overlaps > iou)
            order = torch.argsort(overlaps[pairs[:, 0], pairs[:, 1]], descending=True, stable=True)
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
