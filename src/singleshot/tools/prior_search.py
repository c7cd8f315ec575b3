"""``singleshot priors --optimize``: default boxes fitted to a dataset's objects.

Keeps the model's layer structure (feature maps, steps, boxes per cell) and searches, layer by layer, the
``min_size`` (the first square box), the ``max_size`` (the second square, ``sqrt(min * max)``) and the aspect
ratios, starting from the model's design (the paper's rule for the paper's models). The objective is coverage at
IoU 0.5 plus half the mean best IoU over the training objects; a change is kept only when it raises the objective,
so the result never covers the training objects worse than the start. Deterministic: candidates are tried in a
fixed order and objects beyond ``max_objects`` are subsampled with ``seed``.

Fast: without clipping, an object's best default box of a given shape sits in the cell nearest its centre (moving
a box away lowers the intersection and keeps its area), so each object is compared only with the boxes of the 3x3
cells around its centre (and of the border cells, where ssd.pytorch's clamped centres shift): a few dozen boxes per
object instead of every box of the layer, equal to the exhaustive comparison (a test checks). Clipped designs
(Caffe's ``clip``), where a far box can win by shrinking, are compared with every box.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import yaml
from torch import Tensor
from torchvision.ops import box_iou

from singleshot.boxes import cxcywh_to_xyxy
from singleshot.priors import DefaultBoxConfig, layer_default_boxes

#: Factors tried on a layer's min and max sizes, and the aspect ratios a layer may use.
SIZE_FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.25, 1.4, 1.6, 2.0)
RATIOS = (1.5, 2.0, 2.5, 3.0, 4.0)


def _layer_boxes(design: DefaultBoxConfig, k: int) -> Tensor:
    return cxcywh_to_xyxy(
        layer_default_boxes(
            feature_hw=design.feature_sizes[k], image_hw=design.image_size, min_size=design.min_sizes[k],
            max_size=design.max_sizes[k], aspect_ratios=design.aspect_ratios[k], flip=design.flip, clip=design.clip,
            step=None if design.steps is None else design.steps[k], offset=design.offset, clamp_wh=design.clamp_wh,
            clamp_cxcywh=design.clamp_cxcywh,
        )
    )  # fmt: skip  # keywords grouped by line


def _with_layer(design: DefaultBoxConfig, k: int, **changes: object) -> DefaultBoxConfig:
    fields = {name: list(getattr(design, name)) for name in ("min_sizes", "max_sizes", "aspect_ratios")}
    for name, value in changes.items():
        fields[name][k] = value
    return dataclasses.replace(design, **{name: tuple(v) for name, v in fields.items()})


def _elementwise_iou(a_xyxy: Tensor, b_xyxy: Tensor) -> Tensor:
    """IoU of boxes paired element by element: ``(..., 4)`` and ``(..., 4)`` xyxy (broadcast) -> ``(...)``."""
    lt = torch.maximum(a_xyxy[..., :2], b_xyxy[..., :2])
    rb = torch.minimum(a_xyxy[..., 2:], b_xyxy[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_a = (a_xyxy[..., 2:] - a_xyxy[..., :2]).prod(dim=-1)
    area_b = (b_xyxy[..., 2:] - b_xyxy[..., :2]).prod(dim=-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-12)


def _nearby_cells(centre: Tensor, cells: int, step: float, offset: float) -> Tensor:
    """``(N, 5)`` indices along one axis: the cells around each normalised ``centre`` (nearest and its two
    neighbours) and the two border cells."""
    nearest = (centre / step - offset).round().long()
    candidates = torch.stack([nearest - 1, nearest, nearest + 1], dim=1)
    border = torch.tensor([0, cells - 1]).expand(centre.shape[0], 2)
    return torch.cat([candidates, border], dim=1).clamp(0, cells - 1)


def layer_best_iou(boxes_xyxy: Tensor, design: DefaultBoxConfig, k: int) -> Tensor:
    """``(N,)`` best IoU of each normalised ``boxes_xyxy`` object with the default boxes of layer ``k``, over the
    cells that can hold the best one (module docstring)."""
    if design.clip or boxes_xyxy.shape[0] == 0:
        return torch.cat(
            [box_iou(part, _layer_boxes(design, k)).max(dim=1).values for part in boxes_xyxy.split(2048)]
            or [torch.zeros(0)]
        )
    fh, fw = design.feature_sizes[k]
    ih, iw = design.image_size
    step = None if design.steps is None else design.steps[k]
    step_h, step_w = (ih / fh, iw / fw) if step is None else (step if isinstance(step, tuple) else (step, step))
    grid = _layer_boxes(design, k).to(boxes_xyxy.dtype).view(fh, fw, -1, 4)  # (H, W, A, 4)
    centre = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2
    cols = _nearby_cells(centre[:, 0], fw, step_w / iw, design.offset)
    rows = _nearby_cells(centre[:, 1], fh, step_h / ih, design.offset)
    nearby = grid[rows[:, :, None], cols[:, None, :]]  # (N, 5, 5, A, 4)
    iou = _elementwise_iou(boxes_xyxy[:, None, None, None, :], nearby)
    return iou.flatten(1).max(dim=1).values


class _Scorer:
    """Objective of designs differing layer by layer: per-layer best IoUs are cached, so trying a change to layer
    ``k`` computes only that layer's IoUs."""

    def __init__(self, boxes_xyxy: Tensor, design: DefaultBoxConfig) -> None:
        self.boxes = boxes_xyxy
        self.best = torch.stack([self.layer_best(design, k) for k in range(design.num_layers)])  # (L, N)

    def layer_best(self, design: DefaultBoxConfig, k: int) -> Tensor:
        return layer_best_iou(self.boxes, design, k)

    @staticmethod
    def objective(best: Tensor) -> float:
        overall = best.max(dim=0).values
        return float((overall >= 0.5).float().mean() + 0.5 * overall.mean())

    def trial(self, design: DefaultBoxConfig, k: int) -> tuple[float, Tensor]:
        row = self.layer_best(design, k)
        best = self.best.clone()
        best[k] = row
        return self.objective(best), row


def optimize_design(
    boxes_xyxy: Tensor,
    design: DefaultBoxConfig,
    rounds: int = 2,
    max_objects: int = 10_000,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
) -> DefaultBoxConfig:
    """A design that covers the normalised ``boxes_xyxy`` at least as well as ``design`` (module docstring)."""
    if boxes_xyxy.shape[0] > max_objects:
        keep = torch.randperm(boxes_xyxy.shape[0], generator=torch.Generator().manual_seed(seed))[:max_objects]
        boxes_xyxy = boxes_xyxy[keep]
    scorer = _Scorer(boxes_xyxy, design)
    current = scorer.objective(scorer.best)
    start = current
    for r in range(rounds):
        for k in range(design.num_layers):
            for candidate in _candidates(design, k):
                score, row = scorer.trial(candidate, k)
                if score > current + 1e-9:
                    design, current = candidate, score
                    scorer.best[k] = row
        log(f"round {r + 1}: objective {start:.4f} -> {current:.4f}")
    return design


def _candidates(design: DefaultBoxConfig, k: int) -> list[DefaultBoxConfig]:
    """Changes of layer ``k`` to try, in a fixed order: its min size, its max size, then each aspect ratio."""
    out = []
    lo, hi = design.min_sizes[k], design.max_sizes[k]
    for f in SIZE_FACTORS:
        new_lo = lo * f
        if hi is None or new_lo < hi:
            out.append(_with_layer(design, k, min_sizes=round(new_lo, 2)))
    if hi is not None:
        for f in SIZE_FACTORS:
            if hi * f > lo:
                out.append(_with_layer(design, k, max_sizes=round(hi * f, 2)))
    ratios = list(design.aspect_ratios[k])
    for i in range(len(ratios)):
        for r in RATIOS:
            if r not in ratios:
                out.append(_with_layer(design, k, aspect_ratios=(*ratios[:i], r, *ratios[i + 1 :])))
    return out


def design_yaml(design: DefaultBoxConfig) -> str:
    """The fitted sizes and ratios as a YAML fragment (``default_boxes:`` with its lists)."""
    fields = {
        "min_sizes": [float(v) for v in design.min_sizes],
        "max_sizes": [None if v is None else float(v) for v in design.max_sizes],
        "aspect_ratios": [[float(r) for r in rs] for rs in design.aspect_ratios],
    }
    return yaml.safe_dump({"default_boxes": fields}, default_flow_style=None, sort_keys=False)
