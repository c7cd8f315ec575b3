"""SSD data augmentation (paper sections 2.2 "Data augmentation" and 3.6), on ``torchvision.transforms.v2``.

Presets, applied to ``(image uint8 [3, H, W], target)`` pairs with boxes in xyxy pixels:

* ``ssd``: photometric distortion, zoom-out (expand up to 4x, filled with the mean colour; "zoom out" of
  section 3.6), a random crop whose IoU with some object is at least one of {0.1, 0.3, 0.5, 0.7, 0.9} or the
  whole image (section 2.2), horizontal flip, resize to the model's input size;
* ``ssdlite``: crop and flip only (torchvision's SSDLite recipe: a small model under-fits heavy augmentation);
* ``eval``: resize only.

Boxes that the crop leaves smaller than 1 pixel are dropped together with their labels and ``difficult`` flags.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torchvision.transforms.v2 as T
from torch import Tensor
from torchvision import tv_tensors

from singleshot.boxes import box_area
from singleshot.types import Target

PRESETS = ("ssd", "ssdlite", "eval")


def _labels(inputs: tuple) -> tuple[Tensor, ...]:
    target = inputs[1]
    return tuple(target[k] for k in ("labels", "difficult") if k in target)


class DetectionTransform:
    """Applies a ``transforms.v2`` pipeline to ``(image, target)`` and returns plain tensors again.

    ``identity_size``: for a resize-only pipeline, the size at which it changes nothing, so that images already
    of that size skip it (synthetic data rendered at the model's size: about 1 ms per image saved).
    """

    def __init__(self, transforms: Sequence[Callable], identity_size: tuple[int, int] | None = None) -> None:
        self.pipeline = T.Compose([*transforms, T.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels)])
        self.identity_size = identity_size

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        if self.identity_size is not None and (h, w) == tuple(self.identity_size):
            return image, target
        wrapped = dict(target)
        wrapped["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w))
        image, out = self.pipeline(tv_tensors.Image(image), wrapped)
        out = {k: v.as_subclass(Tensor) if isinstance(v, Tensor) else v for k, v in out.items()}
        return image.as_subclass(Tensor), cast(Target, out)


def build_transforms(
    preset: str, image_size: tuple[int, int], fill: Sequence[int] = (123, 117, 104)
) -> DetectionTransform:
    """The augmentation ``preset`` (see the module docstring) ending at ``image_size`` ``(H, W)``.

    Args:
        fill: zoom-out fill colour, uint8 RGB (default: the ImageNet mean, as the original).
    """
    resize = T.Resize(image_size, antialias=True)
    if preset == "eval":
        return DetectionTransform([resize], identity_size=tuple(image_size))
    crop_and_flip = [T.RandomIoUCrop(), T.RandomHorizontalFlip(p=0.5)]
    if preset == "ssdlite":
        return DetectionTransform([*crop_and_flip, resize])
    if preset == "ssd":
        return DetectionTransform(
            [
                T.RandomPhotometricDistort(p=0.5),
                T.RandomZoomOut(fill={tv_tensors.Image: list(fill), "others": 0}, side_range=(1.0, 4.0), p=0.5),
                *crop_and_flip,
                resize,
            ]
        )
    raise ValueError(f"unknown augmentation preset '{preset}'; choose one of {', '.join(PRESETS)}")


#: A tile keeps an object cut by its border when at least this share of the object's box lies inside it.
MIN_VISIBLE = 0.5
#: Share of training tiles placed over an object (the others anywhere in the image).
OBJECT_BIAS = 0.7


def tile_crop(image: Tensor, target: Target, tile: int) -> tuple[Tensor, Target]:
    """A random ``tile x tile`` window of ``image`` at native resolution (clipped to the image when it is smaller)
    and its objects, for tile training (small objects in large images).

    With probability :data:`OBJECT_BIAS` (when the image has objects) the window is placed, uniformly among the
    positions that contain it, over the centre of a random object; otherwise anywhere. An object cut by the
    window's border is kept, clipped to the window, when at least :data:`MIN_VISIBLE` of its box lies inside;
    otherwise it is dropped. Draws from torch's global RNG (seeded per sample by :class:`~singleshot.data.loader.
    Augmented`).

    Args:
        image: ``[3, H, W]``; target: its ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,) and optional ``difficult``.
    """
    h, w = int(image.shape[-2]), int(image.shape[-1])
    th, tw = min(tile, h), min(tile, w)
    boxes = target["boxes"].float()
    if len(boxes) and float(torch.rand(())) < OBJECT_BIAS:
        k = int(torch.randint(len(boxes), ()))
        cx, cy = float(boxes[k, 0] + boxes[k, 2]) / 2, float(boxes[k, 1] + boxes[k, 3]) / 2
        x_lo, x_hi = max(0, math.ceil(cx - tw)), min(w - tw, math.floor(cx))
        y_lo, y_hi = max(0, math.ceil(cy - th)), min(h - th, math.floor(cy))
        x0 = int(torch.randint(x_lo, max(x_lo, x_hi) + 1, ()))
        y0 = int(torch.randint(y_lo, max(y_lo, y_hi) + 1, ()))
    else:
        x0, y0 = int(torch.randint(w - tw + 1, ())), int(torch.randint(h - th + 1, ()))
    window = torch.tensor([x0, y0, x0 + tw, y0 + th], dtype=torch.float32)
    clipped = torch.cat([torch.maximum(boxes[:, :2], window[:2]), torch.minimum(boxes[:, 2:], window[2:])], 1)
    area, inside = box_area(boxes), box_area(clipped)
    keep = (inside >= MIN_VISIBLE * area) & (inside > 0)
    out: dict = {**target, "boxes": clipped[keep] - window[:2].repeat(2), "labels": target["labels"][keep]}
    if "difficult" in target:
        out["difficult"] = target["difficult"][keep]
    return image[:, y0 : y0 + th, x0 : x0 + tw], cast(Target, out)


class TiledTransform:
    """:func:`tile_crop` at ``tile`` pixels, then ``then`` (the usual augmentation and resize)."""

    def __init__(self, tile: int, then: Callable[[Tensor, Target], tuple[Tensor, Target]]) -> None:
        if tile < 1:
            raise ValueError(f"tile={tile} must be >= 1")
        self.tile, self.then = tile, then

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        return self.then(*tile_crop(image, target, self.tile))


def seeded(index_seed: int, fn: Callable[[], tuple[Tensor, Target]]) -> tuple[Tensor, Target]:
    """Run ``fn`` with torch's global CPU RNG seeded by ``index_seed``, leaving the caller's RNG untouched.

    Only the CPU generator is seeded (the augmentations draw from it): ``torch.manual_seed`` would also queue a
    CUDA seeding, which on a CUDA build records a stack trace each time (measured 1.5 ms per image).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(index_seed)
        return fn()
