"""The SSD model, assembled from its parts: backbone, default boxes, head, loss and post-processor.

Data contract (validated here, at the boundary):

* ``images``: ``list[Tensor[3, H, W]]``, uint8 in [0, 255] or float in [0, 1], RGB, any size;
* ``targets``: ``list[{"boxes": (N, 4) float xyxy pixels of that image, "labels": (N,) int64 in 1..C}]``;
* training returns ``{"loss_cls", "loss_box"}``; inference returns per image
  ``{"boxes": (D, 4) xyxy pixels of that image, "scores": (D,), "labels": (D,)}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from singleshot.head import SSDHead
from singleshot.loss import MultiBoxLoss
from singleshot.postprocess import PostProcessor
from singleshot.priors import DefaultBoxConfig


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input: a fixed ``(H, W)``, and RGB mean/std applied to [0, 1] pixels."""

    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _check_image(i: int, image: object) -> Tensor:
    if not isinstance(image, Tensor):
        raise TypeError(f"images[{i}] is a {type(image).__name__}, expected a Tensor[3, H, W]")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"images[{i}] has shape {tuple(image.shape)}, expected (3, H, W) RGB")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"images[{i}] is empty: shape {tuple(image.shape)}")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise TypeError(f"images[{i}] has dtype {image.dtype}, expected uint8 or floating point")
    return image


def _check_target(i: int, target: object, num_classes: int) -> None:
    if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
        raise ValueError(f"targets[{i}] must be a dict with 'boxes' and 'labels'")
    boxes, labels = target["boxes"], target["labels"]
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"targets[{i}]['boxes'] has shape {shape}, expected (N, 4) xyxy")
    if not boxes.is_floating_point():
        raise TypeError(f"targets[{i}]['boxes'] has dtype {boxes.dtype}, expected floating point")
    if not isinstance(labels, Tensor) or labels.shape != boxes.shape[:1] or labels.is_floating_point():
        raise ValueError(f"targets[{i}]['labels'] must be an integer tensor of shape ({boxes.shape[0]},)")
    if not torch.isfinite(boxes).all():
        raise ValueError(f"targets[{i}]['boxes'] contains NaN or infinite values")
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        j = int(bad.nonzero()[0])
        raise ValueError(f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} has zero or negative width/height")
    if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) > num_classes):
        raise ValueError(f"targets[{i}]['labels'] must be in 1..{num_classes} (0 is background), got {labels.tolist()}")


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """``image`` ``[3, H, W]`` resized to ``size`` = ``(H', W')``, bilinear with antialiasing (uint8 images in the
    channels-last layout, which PyTorch's fast uint8 kernel needs)."""
    batch = image[None]
    if image.dtype == torch.uint8:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)[0]


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    Args:
        backbone: maps ``(B, 3, H, W)`` to a list of feature maps, one per default-box layer.
        head: class and box predictors.
        default_boxes: the default-box design; its ``feature_sizes`` must match the backbone's outputs.
        num_classes: object classes ``C`` (background excluded).
        preprocessing: input size and normalisation.
        loss: training objective.
        postprocess: inference post-processor.
        name: the builder's name, recorded in exported weights.
        channels_last: keep weights and activations in channels-last layout (faster for depthwise
            convolutions on the CPU; see the builders).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: SSDHead,
        default_boxes: DefaultBoxConfig,
        *,
        num_classes: int,
        preprocessing: Preprocessing,
        loss: MultiBoxLoss | None = None,
        postprocess: PostProcessor | None = None,
        name: str = "ssd",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if head.num_logits != num_classes + 1:
            raise ValueError(f"head predicts {head.num_logits} logits, expected num_classes + 1 = {num_classes + 1}")
        if tuple(default_boxes.image_size) != tuple(preprocessing.image_size):
            raise ValueError(
                f"default boxes are for {default_boxes.image_size}, input size is {preprocessing.image_size}"
            )
        self.name = name
        self.backbone = backbone
        self.head = head
        self.default_boxes = default_boxes
        self.num_classes = num_classes
        self.preprocessing = preprocessing
        self.loss = loss if loss is not None else MultiBoxLoss()
        self.postprocess = postprocess if postprocess is not None else PostProcessor()
        self.register_buffer("priors", default_boxes.generate(), persistent=False)
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1), persistent=False)
        self.memory_format = torch.contiguous_format
        self.use_channels_last(channels_last)

    def use_channels_last(self, enabled: bool = True) -> SSD:
        """Switch weights and activations to channels-last (or back); results agree to float rounding."""
        self.memory_format = torch.channels_last if enabled else torch.contiguous_format
        return self.to(memory_format=self.memory_format)

    # -- stages -------------------------------------------------------------------------------------------
    def normalize(self, images: Sequence[Tensor]) -> Tensor:
        """Resize each image to the input size (bilinear, antialiased) and normalise: ``(B, 3, H_in, W_in)`` float.

        A uint8 image on the CPU is resized in uint8 (PyTorch's vectorised channels-last kernel: measured 3x
        faster than in float for 640x480 to 320x320, within one grey level of it).
        """
        size = self.preprocessing.image_size
        batch = []
        for image in images:
            if tuple(image.shape[-2:]) != size and image.dtype == torch.uint8 and image.device.type == "cpu":
                image = resize(image, size)
            x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
            if tuple(x.shape[-2:]) != size:
                x = resize(x, size)
            batch.append(x)
        x = (torch.stack(batch).to(self.mean.device) - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)

    def head_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Raw predictions for a normalised batch ``(B, 3, H_in, W_in)``.

        Returns:
            ``cls_logits (B, P, C + 1)`` and ``bbox_regression (B, P, 4)``, in the order of ``self.priors``.
        """
        return self.head(self.backbone(x))

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses (training mode, targets required) or detections (eval mode); see the module docstring."""
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError("images must be a non-empty list of Tensor[3, H, W]")
        images = [_check_image(i, im) for i, im in enumerate(images)]
        sizes = [(int(im.shape[1]), int(im.shape[2])) for im in images]
        if self.training:
            if targets is None or len(targets) != len(images):
                raise ValueError("training needs one target dict per image")
            for i, t in enumerate(targets):
                _check_target(i, t, self.num_classes)
            cls_logits, bbox_regression = self.head_outputs(self.normalize(images))
            device = cls_logits.device
            normalised = [
                {
                    "boxes": t["boxes"].to(device, torch.float32)
                    / torch.tensor([w, h, w, h], dtype=torch.float32, device=device),
                    "labels": t["labels"].to(device, torch.int64),
                }
                for t, (h, w) in zip(targets, sizes, strict=True)
            ]
            return self.loss(cls_logits, bbox_regression, normalised, self.priors)
        cls_logits, bbox_regression = self.head_outputs(self.normalize(images))
        return self.postprocess(cls_logits, bbox_regression, sizes, priors_cxcywh=self.priors)
