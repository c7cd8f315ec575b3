"""Box maths: pure functions over ``(..., 4)`` tensors.

Formats, named in every function:

* ``xyxy``   -- corners ``(x1, y1, x2, y2)``; what the pipeline carries (pixels, or normalised to [0, 1]).
* ``cxcywh`` -- centre and size ``(cx, cy, w, h)``; default boxes and regression targets only.
* ``xywh``   -- top-left corner and size ``(x, y, w, h)``; COCO files only (annotations and results).

The SSD box coder (paper eq. 2) regresses offsets of a ground-truth box ``g`` from a default box ``d``::

    t_cx = (g_cx - d_cx) / d_w / v0      t_w = log(g_w / d_w) / v1
    t_cy = (g_cy - d_cy) / d_h / v0      t_h = log(g_h / d_h) / v1

with the original Caffe implementation's "variances" ``(v0, v1) = (0.1, 0.2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_iou as _tv_box_iou

#: Caffe SSD's prior variances: centre offsets are scaled by 1/0.1, log-size ratios by 1/0.2.
DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)

#: Largest log-size offset accepted by :func:`decode` (a box may grow at most 1000/16 times its prior),
#: so that an untrained or diverging head cannot overflow ``exp``.
MAX_LOG_SCALE: float = math.log(1000.0 / 16)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """Convert ``(..., 4)`` xyxy boxes to cxcywh."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert ``(..., 4)`` cxcywh boxes to xyxy."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """Convert ``(..., 4)`` xyxy boxes to COCO's xywh."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def box_iou(boxes1_xyxy: Tensor, boxes2_xyxy: Tensor) -> Tensor:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes, shape ``(N, M)`` (torchvision's kernel)."""
    return _tv_box_iou(boxes1_xyxy, boxes2_xyxy)


def box_iou_pixel_indices(boxes1_xyxy: Tensor, boxes2_xyxy: Tensor) -> Tensor:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes given as inclusive pixel indices (the Pascal VOC
    devkit's convention: a box spans ``x2 - x1 + 1`` pixels), shape ``(N, M)``."""
    lt = torch.maximum(boxes1_xyxy[:, None, :2], boxes2_xyxy[None, :, :2])
    rb = torch.minimum(boxes1_xyxy[:, None, 2:], boxes2_xyxy[None, :, 2:])
    inter = (rb - lt + 1).clamp(min=0).prod(dim=-1)
    area1 = ((boxes1_xyxy[:, 2:] - boxes1_xyxy[:, :2] + 1).clamp(min=0)).prod(dim=-1)
    area2 = ((boxes2_xyxy[:, 2:] - boxes2_xyxy[:, :2] + 1).clamp(min=0)).prod(dim=-1)
    return inter / (area1[:, None] + area2[None, :] - inter)


def box_intersection(boxes1_xyxy: Tensor, boxes2_xyxy: Tensor) -> Tensor:
    """Pairwise intersection areas of ``(N, 4)`` and ``(M, 4)`` xyxy boxes, shape ``(N, M)`` (0 where disjoint)."""
    lt = torch.maximum(boxes1_xyxy[:, None, :2], boxes2_xyxy[None, :, :2])
    rb = torch.minimum(boxes1_xyxy[:, None, 2:], boxes2_xyxy[None, :, 2:])
    return (rb - lt).clamp(min=0).prod(dim=-1)


def box_area(boxes_xyxy: Tensor) -> Tensor:
    """Area of ``(..., 4)`` xyxy boxes, shape ``(...)``; negative extents count as zero."""
    return (boxes_xyxy[..., 2] - boxes_xyxy[..., 0]).clamp(min=0) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1]).clamp(
        min=0
    )


def encode(gt_xyxy: Tensor, priors_cxcywh: Tensor, variances: tuple[float, float] = DEFAULT_VARIANCES) -> Tensor:
    """Regression targets of ground-truth boxes relative to their default boxes (paper eq. 2).

    Args:
        gt_xyxy: ``(..., P, 4)`` ground-truth box assigned to each default box, xyxy, same units as priors.
        priors_cxcywh: ``(P, 4)`` default boxes, cxcywh.
        variances: ``(v0, v1)`` divisors of centre and log-size offsets.

    Returns:
        ``(..., P, 4)`` offsets ``(t_cx, t_cy, t_w, t_h)``.
    """
    g = xyxy_to_cxcywh(gt_xyxy)
    d = priors_cxcywh
    t_xy = (g[..., :2] - d[..., :2]) / d[..., 2:] / variances[0]
    t_wh = torch.log(g[..., 2:] / d[..., 2:]) / variances[1]
    return torch.cat((t_xy, t_wh), dim=-1)


def decode(offsets: Tensor, priors_cxcywh: Tensor, variances: tuple[float, float] = DEFAULT_VARIANCES) -> Tensor:
    """Boxes predicted by ``offsets`` from their default boxes; the inverse of :func:`encode`.

    Args:
        offsets: ``(..., P, 4)`` predicted ``(t_cx, t_cy, t_w, t_h)``.
        priors_cxcywh: ``(P, 4)`` default boxes, cxcywh.
        variances: ``(v0, v1)`` as in :func:`encode`.

    Returns:
        ``(..., P, 4)`` xyxy boxes in the priors' units. Log-size offsets are clamped at
        :data:`MAX_LOG_SCALE` so that ``exp`` stays finite.
    """
    d = priors_cxcywh
    cxcy = d[..., :2] + offsets[..., :2] * variances[0] * d[..., 2:]
    wh = d[..., 2:] * torch.exp((offsets[..., 2:] * variances[1]).clamp(max=MAX_LOG_SCALE))
    return torch.cat((cxcy - wh / 2, cxcy + wh / 2), dim=-1)
