"""The data contract, defined once: what datasets yield, what the model takes and what it returns.

* images: ``list[Tensor[3, H, W]]``, uint8 in [0, 255] or float in [0, 1], RGB, any size;
* :class:`Target`: ground truth of one image, boxes in xyxy pixels of that image;
* :class:`Detection`: what inference returns for one image, boxes in xyxy pixels of that image.

``SSD.forward`` validates images and targets at the boundary (:mod:`singleshot.ssd`).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from torch import Tensor


class Target(TypedDict):
    """Ground truth of one image.

    ``boxes`` (N, 4) float xyxy pixels; ``labels`` (N,) int64 in 1..C (0 is background). Datasets add
    ``difficult`` (N,) bool (VOC difficult objects, COCO crowd regions: not trained on, ignored by the metrics)
    and ``image_id`` (), the item's index in its dataset.
    """

    boxes: Tensor
    labels: Tensor
    difficult: NotRequired[Tensor]
    image_id: NotRequired[Tensor]


class Detection(TypedDict):
    """Detections of one image: ``boxes`` (D, 4) xyxy pixels, ``scores`` (D,), ``labels`` (D,) int64 in 1..C,
    sorted by decreasing score."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


__all__ = ["Detection", "Target"]
