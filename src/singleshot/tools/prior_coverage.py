"""``singleshot priors``: how well a model's default boxes cover a dataset's objects (paper section 2.2).

A ground-truth box that no default box overlaps at IoU >= 0.5 is matched only through the forced best-box step,
with poor regression targets. For every object, after the training resize (boxes normalised to the image, so the
resize to the model's square input keeps them), this reports the best default-box IoU; per class and per size
bucket: coverage (share of objects whose best IoU >= 0.5), mean best IoU, default boxes matched per object at 0.5;
and which feature-map layer holds each object's best default box.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor
from torchvision.ops import box_iou

from singleshot.boxes import box_intersection, cxcywh_to_xyxy
from singleshot.config import Config, setting, shared
from singleshot.data import open_split
from singleshot.data.dataset import DetectionDataset
from singleshot.data.images import probe
from singleshot.folders import new_run_dir
from singleshot.models import build
from singleshot.plots import pyplot
from singleshot.predict.slicing import SliceSettings, tile_grid
from singleshot.priors import DefaultBoxConfig
from singleshot.tools.prior_search import design_yaml, optimize_design

#: Size buckets: sqrt(box area) in pixels of the resized input (COCO's small/medium/large limits).
SIZE_BUCKETS = (("small <32", 0.0, 32.0), ("medium 32-96", 32.0, 96.0), ("large >96", 96.0, math.inf))
THRESHOLD = 0.5


@dataclass
class PriorsConfig(Config):
    """What ``singleshot priors`` measures: a model's default boxes against a dataset's objects."""

    what: ClassVar[str] = "priors"

    data: str = setting(help="dataset folder or file (VOC, COCO or YOLO; detected automatically)")
    model: str = setting("ssd300_vgg16", "model variant whose default boxes are measured (see singleshot models)")
    imgsz: int | None = setting(None, "input side in pixels; none keeps the model's own (300, 320 or 512)")
    split: str = setting("train", "split whose objects are measured")
    classes: list[str] | None = shared("classes")
    tile: int | None = setting(
        None, "measure objects as they appear in the tiles of sliced inference at this side (train --tile, --slice)"
    )
    optimize: bool = setting(False, "also fit sizes and aspect ratios to the objects; writes default_boxes.yaml")
    rounds: int = setting(2, "passes of the layer-by-layer search over sizes and ratios (with --optimize)")
    seed: int = setting(0, "seed of the object subsample when there are over 10000 objects (with --optimize)")
    project: str = shared("project", task="priors")
    name: str = shared("name")
    exist_ok: bool = shared("exist_ok")


@dataclass
class Coverage:
    """Per object: its class (1..C), best default-box IoU, default boxes at IoU >= 0.5, the layer of the best one,
    and its size (sqrt area, pixels of the input)."""

    labels: Tensor
    best_iou: Tensor
    matches: Tensor
    best_layer: Tensor
    size_px: Tensor

    def rate(self, mask: Tensor | None = None) -> float:
        """Share of objects (under ``mask``) whose best IoU is at least 0.5."""
        best = self.best_iou if mask is None else self.best_iou[mask]
        return float((best >= THRESHOLD).float().mean()) if best.numel() else math.nan


def dataset_boxes(dataset: DetectionDataset, tile: int | None = None) -> tuple[Tensor, Tensor]:
    """Every object of ``dataset``: ``(N, 4)`` xyxy boxes normalised to their image (with ``tile``: to the tile of
    sliced inference that holds it, :func:`tile_boxes`), and ``(N,)`` labels."""
    boxes, labels = [], []
    for path, apply_exif, target in dataset.items:
        info = probe(path)
        w, h = (info.width, info.height) if apply_exif else (info.raw_width, info.raw_height)
        if tile is None:
            boxes.append(target["boxes"] / torch.tensor([w, h, w, h], dtype=torch.float32))
        else:
            boxes.append(tile_boxes(target["boxes"].float(), h, w, tile))
        labels.append(target["labels"])
    return torch.cat(boxes) if boxes else torch.zeros(0, 4), torch.cat(labels) if labels else torch.zeros(0)


def tile_boxes(boxes_xyxy: Tensor, height: int, width: int, tile: int) -> Tensor:
    """``(N, 4)`` the objects of an ``height x width`` image as they appear in the tiles of sliced inference at
    ``tile`` pixels (:func:`~singleshot.predict.slicing.tile_grid`, the default overlap): each in the tile holding
    the largest part of it (on ties, the one whose centre is nearest the object's), clipped to it and normalised
    to its size."""
    windows = tile_grid(height, width, SliceSettings((tile, tile))).float()  # (T, 4)
    if len(boxes_xyxy) == 0:
        return torch.zeros(0, 4)
    inside = box_intersection(boxes_xyxy, windows)  # (N, T)
    centre = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2
    distance = (centre[:, None, :] - (windows[None, :, :2] + windows[None, :, 2:]) / 2).abs().sum(dim=2)
    nearest_first = torch.argsort(distance, dim=1, stable=True)
    rows = torch.arange(len(boxes_xyxy))
    best = nearest_first[rows, inside.gather(1, nearest_first).argmax(dim=1)]  # most inside; ties: the nearest
    window = windows[best]
    clipped = torch.cat(
        [torch.maximum(boxes_xyxy[:, :2], window[:, :2]), torch.minimum(boxes_xyxy[:, 2:], window[:, 2:])], 1
    )
    size = (window[:, 2:] - window[:, :2]).repeat(1, 2)
    return (clipped - window[:, :2].repeat(1, 2)) / size


def coverage(boxes_xyxy: Tensor, labels: Tensor, design: DefaultBoxConfig, chunk: int = 4096) -> Coverage:
    """Best default-box IoU of each normalised ``boxes_xyxy`` object under ``design`` (see :class:`Coverage`)."""
    priors = cxcywh_to_xyxy(design.generate())
    layer_of = torch.repeat_interleave(torch.arange(design.num_layers), torch.tensor(design.boxes_per_layer()))
    best, arg, matches = [], [], []
    for start in range(0, boxes_xyxy.shape[0], chunk):
        iou = box_iou(boxes_xyxy[start : start + chunk], priors)  # (n, P)
        value, index = iou.max(dim=1)
        best.append(value)
        arg.append(index)
        matches.append((iou >= THRESHOLD).sum(dim=1))
    h, w = design.image_size
    wh = (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]) * torch.tensor([w, h])
    cat = (lambda xs: torch.cat(xs)) if best else (lambda xs: torch.zeros(0))
    return Coverage(
        labels=labels,
        best_iou=cat(best),
        matches=cat(matches),
        best_layer=layer_of[cat(arg).long()] if best else torch.zeros(0, dtype=torch.long),
        size_px=wh.prod(dim=1).clamp(min=0).sqrt(),
    )


def coverage_table(cov: Coverage, class_names: list[str], design: DefaultBoxConfig) -> str:
    """The printed report: per class and size bucket, then which layer serves which sizes."""
    lines = [f"{'objects':<16} {'count':>7} {'coverage':>9} {'mean IoU':>9} {'matches':>8}"]

    def row(name: str, mask: Tensor) -> None:
        n = int(mask.sum())
        if n:
            mean_iou, matched = float(cov.best_iou[mask].mean()), float(cov.matches[mask].float().mean())
            lines.append(f"{name:<16} {n:>7} {cov.rate(mask):>9.3f} {mean_iou:>9.3f} {matched:>8.1f}")

    row("all", torch.ones_like(cov.labels, dtype=torch.bool))
    for c, name in enumerate(class_names, start=1):
        row(name, cov.labels == c)
    for name, lo, hi in SIZE_BUCKETS:
        row(name, (cov.size_px >= lo) & (cov.size_px < hi))
    lines.append("")
    lines.append(f"{'layer':<6} {'map':>7} {'min size':>9} {'objects':>8} {'their sizes (px, 10-90%)':>26}")
    for k in range(design.num_layers):
        mask = cov.best_layer == k
        fh, fw = design.feature_sizes[k]
        sizes = cov.size_px[mask]
        spread = f"{float(sizes.quantile(0.1)):.0f}-{float(sizes.quantile(0.9)):.0f}" if sizes.numel() else "-"
        lines.append(f"{k:<6} {f'{fh}x{fw}':>7} {design.min_sizes[k]:>9.1f} {int(mask.sum()):>8} {spread:>26}")
    return "\n".join(lines)


def plot_coverage(
    cov: Coverage, boxes_xyxy: Tensor, class_names: list[str], design: DefaultBoxConfig, out: Path
) -> None:
    """``boxes.png``: object widths/heights in input pixels with the default-box shapes overlaid; ``best_iou.png``:
    the best-IoU histogram per class."""
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    h, w = design.image_size
    wh = (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]) * torch.tensor([w, h])
    fig, ax = plt.subplots(figsize=(7, 6))
    for c, name in enumerate(class_names, start=1):
        m = cov.labels == c
        ax.scatter(wh[m, 0], wh[m, 1], s=4, alpha=0.5, label=name)
    shapes = torch.unique(design.generate()[:, 2:] * torch.tensor([w, h]), dim=0)
    ax.scatter(shapes[:, 0], shapes[:, 1], marker="x", c="black", s=30, label="default boxes")
    ax.set(xscale="log", yscale="log", xlabel="width (px of the input)", ylabel="height (px of the input)")
    ax.set_title(f"objects and default-box shapes at {w}x{h}")
    ax.legend(markerscale=3)
    fig.savefig(out / "boxes.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    for c, name in enumerate(class_names, start=1):
        ax.hist(cov.best_iou[cov.labels == c].numpy(), bins=40, range=(0, 1), histtype="step", label=name)
    ax.axvline(THRESHOLD, color="black", linestyle="--")
    ax.set(xlabel="best default-box IoU", ylabel="objects", title="best IoU per object (>= 0.5: matched)")
    ax.legend()
    fig.savefig(out / "best_iou.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def run(config: PriorsConfig, *, log: Callable[[str], None] = print) -> tuple[Coverage, Path]:
    """``singleshot priors``: the coverage report of ``config.model``'s default boxes on ``config.split`` of
    ``config.data``, printed, with its plots in ``runs/priors/<name>``; returns the coverage and the folder."""
    config.validate()
    dataset, _ = open_split(config.data, config.split, config.classes)
    model = build(config.model, num_classes=len(dataset.class_names), image_size=config.imgsz)
    design = model.default_boxes
    boxes, labels = dataset_boxes(dataset, config.tile)
    cov = coverage(boxes, labels, design)
    run_dir = new_run_dir(config.project, config.name, config.exist_ok)
    plot_coverage(cov, boxes, dataset.class_names, design, run_dir)
    h, w = design.image_size
    log(f"{model.name} at {w}x{h}: {design.num_boxes()} default boxes; {dataset.name}: {len(boxes)} objects")
    log(coverage_table(cov, dataset.class_names, design))
    if config.optimize:
        fitted = optimize_design(boxes, design, rounds=config.rounds, seed=config.seed, log=log)
        cov = coverage(boxes, labels, fitted)
        log(f"fitted default boxes ({fitted.num_boxes()}):")
        log(coverage_table(cov, dataset.class_names, fitted))
        (run_dir / "default_boxes.yaml").write_text(design_yaml(fitted))
        plot_coverage(cov, boxes, dataset.class_names, fitted, run_dir / "fitted")
        log(f"fitted design in {run_dir / 'default_boxes.yaml'}")
    log(f"plots in {run_dir}")
    return cov, run_dir
