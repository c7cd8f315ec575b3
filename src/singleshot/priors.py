"""Default boxes (priors), paper section 2.2 "Choosing scales and aspect ratios for default boxes".

Every feature-map cell ``(i, j)`` of layer ``k`` is the centre ``((j + offset) * step / W, (i + offset) * step / H)``
of a fixed set of boxes, emitted in this order (the original Caffe ``PriorBox`` layer's):

1. the square box of side ``min_size``;
2. the square box of side ``sqrt(min_size * max_size)`` (when the layer has a ``max_size``);
3. for each aspect ratio ``r`` (ratios equal to 1 or repeated are skipped): the box
   ``min_size * sqrt(r)`` wide and ``min_size / sqrt(r)`` high, then, when ``flip``, its ``1/r`` twin.

Cells are visited in row-major order, layers in the backbone's order. Boxes are cxcywh normalised to [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import torch
from torch import Tensor

from singleshot.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

HW = tuple[int, int]


def _unique_ratios(aspect_ratios: Sequence[float], flip: bool) -> list[float]:
    """Aspect ratios after the square box: duplicates and ratios equal to 1 removed, 1/r added if flip."""
    seen: list[float] = [1.0]
    out: list[float] = []
    for r in aspect_ratios:
        if r <= 0:
            raise ValueError(f"aspect ratios must be positive, got {r}")
        for candidate in (r, 1.0 / r) if flip else (r,):
            if all(abs(candidate - s) > 1e-6 for s in seen):
                seen.append(candidate)
                out.append(candidate)
    return out


def boxes_per_location(aspect_ratios: Sequence[float], flip: bool = True, has_max_size: bool = True) -> int:
    """Number of default boxes per feature-map cell, derived from the aspect ratios."""
    return 1 + int(has_max_size) + len(_unique_ratios(aspect_ratios, flip))


def layer_default_boxes(
    feature_hw: HW,
    image_hw: HW,
    *,
    min_size: float,
    max_size: float | None,
    aspect_ratios: Sequence[float],
    flip: bool = True,
    clip: bool = False,
    step: float | tuple[float, float] | None = None,
    offset: float = 0.5,
    clamp_wh: bool = False,
    clamp_cxcywh: bool = False,
) -> Tensor:
    """Default boxes of one feature map, in the order described in the module docstring.

    Args:
        feature_hw: ``(H, W)`` of the feature map.
        image_hw: ``(H, W)`` of the network input, pixels.
        min_size: side of the first square box, pixels.
        max_size: the second square box has side ``sqrt(min_size * max_size)``; ``None`` for no such box.
        aspect_ratios: ratios ``w/h`` besides 1.
        flip: also emit ``1/r`` for each ratio ``r``.
        clip: clip box corners to the image (Caffe's ``clip``).
        step: pixels between cell centres, ``(step_h, step_w)`` or one number; ``None`` for ``image / feature``.
        offset: centre of a cell within its step, in steps.
        clamp_wh: clamp widths and heights to [0, 1] (torchvision's ``DefaultBoxGenerator(clip=True)``).
        clamp_cxcywh: clamp centres, widths and heights, each to [0, 1] (ssd.pytorch's ``clip``: it moves the
            last row and column of centres of a map whose cells overhang the image, e.g. SSD300's 10x10 map).

    Returns:
        ``(H * W * A, 4)`` cxcywh boxes normalised by the image size, ``A`` = :func:`boxes_per_location`.
    """
    fh, fw = feature_hw
    ih, iw = image_hw
    if step is None:
        step_h, step_w = ih / fh, iw / fw
    elif isinstance(step, tuple):
        step_h, step_w = step
    else:
        step_h = step_w = float(step)

    sizes: list[tuple[float, float]] = [(min_size, min_size)]
    if max_size is not None:
        side = math.sqrt(min_size * max_size)
        sizes.append((side, side))
    for r in _unique_ratios(aspect_ratios, flip):
        sizes.append((min_size * math.sqrt(r), min_size / math.sqrt(r)))
    wh = torch.tensor(sizes, dtype=torch.float64) / torch.tensor([iw, ih], dtype=torch.float64)
    if clamp_wh:
        wh = wh.clamp(0.0, 1.0)

    cy = (torch.arange(fh, dtype=torch.float64) + offset) * step_h / ih
    cx = (torch.arange(fw, dtype=torch.float64) + offset) * step_w / iw
    grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
    centres = torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 1, 2)  # (H*W, 1, 2), row-major
    boxes = torch.cat((centres.expand(-1, len(sizes), 2), wh.expand(fh * fw, -1, -1)), dim=-1).reshape(-1, 4)
    if clamp_cxcywh:
        boxes = boxes.clamp(0.0, 1.0)
    if clip:
        boxes = xyxy_to_cxcywh(cxcywh_to_xyxy(boxes).clamp(0.0, 1.0))
    return boxes.to(torch.float32)


def linear_scales(num_layers: int, s_min: float = 0.2, s_max: float = 0.9) -> list[float]:
    """The paper's scale rule (eq. 4): ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)``, ``k = 1..m``."""
    if num_layers == 1:
        return [s_min]
    return [s_min + (s_max - s_min) * k / (num_layers - 1) for k in range(num_layers)]


@dataclass(frozen=True)
class DefaultBoxConfig:
    """All default boxes of a model: one entry per feature map, in the backbone's order.

    Sizes are pixels of the ``image_size`` input. ``steps`` (pixels between cell centres) and the sizes are the
    paper's constants for the paper's models; ``feature_sizes`` must equal what the backbone produces, which the
    model builders check with a dry run.
    """

    image_size: HW
    feature_sizes: tuple[HW, ...]
    _: KW_ONLY
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float | None, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    steps: tuple[float, ...] | None = None
    flip: bool = True
    clip: bool = False
    offset: float = 0.5
    clamp_wh: bool = False
    clamp_cxcywh: bool = False

    def __post_init__(self) -> None:
        n = len(self.feature_sizes)
        lengths = {
            "min_sizes": len(self.min_sizes),
            "max_sizes": len(self.max_sizes),
            "aspect_ratios": len(self.aspect_ratios),
        }
        if self.steps is not None:
            lengths["steps"] = len(self.steps)
        wrong = {k: v for k, v in lengths.items() if v != n}
        if wrong:
            raise ValueError(f"DefaultBoxConfig has {n} feature maps but {wrong}")

    @property
    def num_layers(self) -> int:
        return len(self.feature_sizes)

    def boxes_per_location(self) -> list[int]:
        """Boxes per cell of each layer, derived from the aspect ratios."""
        return [
            boxes_per_location(r, self.flip, m is not None)
            for r, m in zip(self.aspect_ratios, self.max_sizes, strict=True)
        ]

    def boxes_per_layer(self) -> list[int]:
        return [h * w * a for (h, w), a in zip(self.feature_sizes, self.boxes_per_location(), strict=True)]

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> DefaultBoxConfig:
        """The inverse of ``dataclasses.asdict`` after a JSON round trip (lists back to tuples)."""

        def tuples(v: Any) -> Any:
            return tuple(tuples(x) for x in v) if isinstance(v, list) else v

        return cls(**{k: tuples(v) for k, v in fields.items()})

    def with_fitted(self, fitted: dict[str, Any]) -> DefaultBoxConfig:
        """This design with the ``min_sizes``, ``max_sizes`` and ``aspect_ratios`` of ``fitted`` (the
        ``default_boxes`` mapping ``singleshot priors --optimize`` writes); other keys are an error."""
        allowed = {"min_sizes", "max_sizes", "aspect_ratios"}
        unknown = set(fitted) - allowed
        if unknown:
            raise ValueError(f"default_boxes: unknown keys {sorted(unknown)}; expected {sorted(allowed)}")
        changes = {k: tuple(tuple(v) if isinstance(v, list) else v for v in fitted[k]) for k in fitted}
        for key, values in changes.items():
            if len(values) != self.num_layers:
                raise ValueError(f"default_boxes: {key} has {len(values)} entries for {self.num_layers} layers")
        return dataclasses.replace(self, **changes)

    def num_boxes(self) -> int:
        return sum(self.boxes_per_layer())

    def generate(self) -> Tensor:
        """All default boxes, ``(P, 4)`` cxcywh normalised, layers concatenated in order."""
        layers = [
            layer_default_boxes(
                feature_hw=self.feature_sizes[k],
                image_hw=self.image_size,
                min_size=self.min_sizes[k],
                max_size=self.max_sizes[k],
                aspect_ratios=self.aspect_ratios[k],
                flip=self.flip,
                clip=self.clip,
                step=None if self.steps is None else self.steps[k],
                offset=self.offset,
                clamp_wh=self.clamp_wh,
                clamp_cxcywh=self.clamp_cxcywh,
            )
            for k in range(self.num_layers)
        ]
        return torch.cat(layers, dim=0)

    def rescaled(self, image_size: HW, feature_sizes: Sequence[HW]) -> DefaultBoxConfig:
        """The same design for another input size: box sizes keep their fraction of the image side, and
        cell centres follow the new feature maps (``steps`` become ``image / feature``)."""
        if tuple(image_size) == tuple(self.image_size) and tuple(map(tuple, feature_sizes)) == self.feature_sizes:
            return self
        factor = min(image_size) / min(self.image_size)
        return dataclasses.replace(
            self,
            image_size=tuple(image_size),
            feature_sizes=tuple(tuple(f) for f in feature_sizes),
            min_sizes=tuple(s * factor for s in self.min_sizes),
            max_sizes=tuple(None if s is None else s * factor for s in self.max_sizes),
            steps=None,
        )

    @classmethod
    def from_scales(
        cls,
        image_size: HW | int,
        feature_sizes: Sequence[HW | int],
        aspect_ratios: Sequence[Sequence[float]],
        *,
        s_min: float = 0.2,
        s_max: float = 0.9,
        last_scale: float | None = None,
        steps: Sequence[float] | None = None,
        **kwargs: object,
    ) -> DefaultBoxConfig:
        """Design default boxes with the paper's linear scale rule (eq. 4).

        Layer ``k`` gets ``min_size = s_k * side`` and ``max_size = s_{k+1} * side`` (the extra square box of
        scale ``sqrt(s_k s_{k+1})``), ``side = min(image H, W)``. The scale after the last layer is
        ``last_scale``, or one more step of the rule when ``None``.

        Example: torchvision's SSDLite320 boxes are
        ``from_scales(320, [20, 10, 5, 3, 2, 1], [[2, 3]] * 6, 0.2, 0.95, last_scale=1.0, clamp_wh=True)``.
        """
        image_hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        fs = tuple((f, f) if isinstance(f, int) else tuple(f) for f in feature_sizes)
        scales = linear_scales(len(fs), s_min, s_max)
        if last_scale is None:
            last_scale = scales[-1] + (scales[-1] - scales[-2] if len(scales) > 1 else 0.0)
        scales.append(last_scale)
        side = min(image_hw)
        return cls(
            image_size=image_hw,  # type: ignore[arg-type]  # sequences normalised by __post_init__
            feature_sizes=fs,  # type: ignore[arg-type]  # sequences normalised by __post_init__
            min_sizes=tuple(s * side for s in scales[:-1]),
            max_sizes=tuple(s * side for s in scales[1:]),
            aspect_ratios=tuple(tuple(float(r) for r in rs) for rs in aspect_ratios),
            steps=None if steps is None else tuple(steps),
            **kwargs,  # type: ignore[arg-type]  # sequences normalised by __post_init__
        )
