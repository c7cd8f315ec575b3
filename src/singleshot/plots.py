"""Pictures people would rather look at than read: training curves, augmented batches, predictions."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, make_grid

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe"]


def draw(image: Tensor, boxes: Tensor, labels: Sequence[str], colours: Sequence[str] | None = None) -> Tensor:
    """``image`` (uint8 [3, H, W]) with labelled boxes drawn on it."""
    if boxes.numel() == 0:
        return image
    width = max(1, round(min(image.shape[-2:]) / 200))
    return draw_bounding_boxes(
        image, boxes.float(), list(labels), colors=list(colours) if colours else None, width=width
    )


def _colour(label: int) -> str:
    return PALETTE[(label - 1) % len(PALETTE)]


def save_image(image: Tensor, path: str | Path, quality: int = 90) -> None:
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(path, quality=quality)


def batch_grid(images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]], class_names: Sequence[str]) -> Tensor:
    """A grid of training images with their (augmented) ground-truth boxes."""
    drawn = []
    for image, target in zip(images, targets, strict=True):
        labels = target["labels"].tolist()
        drawn.append(draw(image, target["boxes"], [class_names[i - 1] for i in labels], [_colour(i) for i in labels]))
    return make_grid(drawn, nrow=min(4, len(drawn)), padding=4)


def prediction_pair(
    image: Tensor, detection: dict[str, Tensor], target: dict[str, Tensor], class_names: Sequence[str], min_score: float
) -> Tensor:
    """Predictions (left, with scores) and ground truth (right) side by side."""
    keep = detection["scores"] >= min_score
    labels = detection["labels"][keep].tolist()
    names = [f"{class_names[i - 1]} {s:.2f}" for i, s in zip(labels, detection["scores"][keep].tolist(), strict=True)]
    left = draw(image, detection["boxes"][keep], names, [_colour(i) for i in labels])
    gt_labels = target["labels"].tolist()
    right = draw(image, target["boxes"], [class_names[i - 1] for i in gt_labels], [_colour(i) for i in gt_labels])
    return make_grid([left, right], nrow=2, padding=4)


def plot_results(metrics_csv: str | Path, out_path: str | Path) -> None:
    """Loss curves and mAP per epoch from ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, ax in zip(("loss_cls", "loss_box"), axes[:2], strict=True):
        ax.plot(epochs, [float(r[key]) for r in rows], marker="o", ms=3)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    evaluated = [(e, float(r["map50"])) for e, r in zip(epochs, rows, strict=True) if r.get("map50") not in ("", None)]
    if evaluated:
        axes[2].plot(*zip(*evaluated, strict=True), marker="o", ms=3, color="tab:green")
    axes[2].set_title("mAP@0.5 (VOC07)")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylim(0, 1)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
