"""Pictures people would rather look at than read: training curves, augmented batches, predictions."""

from __future__ import annotations

import csv
import functools
import types
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor
from torchvision.utils import draw_bounding_boxes, make_grid

from singleshot.metrics import MetricReport
from singleshot.types import Detection, Target

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe"]


def draw(
    image: Tensor,
    boxes: Tensor,
    labels: Sequence[str],
    colours: Sequence[str] | None = None,
    line_width: int | None = None,
) -> Tensor:
    """``image`` (uint8 [3, H, W]) with labelled boxes (xyxy pixels) drawn on it: lines ``line_width`` pixels wide
    (default: a 200th of the shorter side), white labels on the box's colour, sized to the image."""
    if boxes.numel() == 0:
        return image
    side = min(image.shape[-2:])
    width = line_width or max(1, round(side / 200))
    return draw_bounding_boxes(
        image, boxes.float(), list(labels), colors=list(colours) if colours else None, width=width,
        font=font_file(), font_size=max(9, round(side / 45)), label_colors="white",
        label_background_colors=list(colours) if colours else None, fill_labels=True,
    )  # fmt: skip  # keywords grouped by line


@functools.cache
def font_file() -> str | None:
    """DejaVu Sans, which matplotlib ships (None: torchvision's small built-in font)."""
    import matplotlib  # on first use: 0.2 s that the command line's start need not pay (nor `singleshot --help`)

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(path) if path.is_file() else None


def palette_colour(index: int) -> str:
    """The colour of class label (or track id) ``index`` >= 1: :data:`PALETTE` in turn."""
    return PALETTE[(index - 1) % len(PALETTE)]


def batch_grid(images: Sequence[Tensor], targets: Sequence[Target], class_names: Sequence[str]) -> Tensor:
    """A grid of training images with their (augmented) ground-truth boxes."""
    drawn = []
    for image, target in zip(images, targets, strict=True):
        labels = target["labels"].tolist()
        names = [class_names[i - 1] for i in labels]
        drawn.append(draw(image, target["boxes"], names, [palette_colour(i) for i in labels]))
    return make_grid(drawn, nrow=min(4, len(drawn)), padding=4)


def draw_detections(
    image: Tensor,
    detection: Detection,
    class_names: Sequence[str],
    min_score: float = 0.0,
    line_width: int | None = None,
) -> Tensor:
    """``image`` (uint8 [3, H, W]) with the detections scoring at least ``min_score`` drawn: a box in its class's
    colour labelled ``"<class> <score>"``."""
    keep = detection["scores"] >= min_score
    labels = detection["labels"][keep].tolist()
    names = [f"{class_names[i - 1]} {s:.2f}" for i, s in zip(labels, detection["scores"][keep].tolist(), strict=True)]
    return draw(image, detection["boxes"][keep], names, [palette_colour(i) for i in labels], line_width)


def prediction_pair(
    image: Tensor, detection: Detection, target: Target, class_names: Sequence[str], min_score: float
) -> Tensor:
    """Predictions (left, with scores) and ground truth (right) side by side."""
    left = draw_detections(image, detection, class_names, min_score)
    gt_labels = target["labels"].tolist()
    names = [class_names[i - 1] for i in gt_labels]
    right = draw(image, target["boxes"], names, [palette_colour(i) for i in gt_labels])
    return make_grid([left, right], nrow=2, padding=4)


def plot_results(metrics_csv: str | Path, out_path: str | Path) -> None:
    """Loss curves and mAP per epoch from ``metrics.csv``."""
    plt = pyplot()
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
    for key, label, colour in (("map50", "mAP@0.5 (VOC07)", "tab:green"), ("map", "COCO AP@[.5:.95]", "tab:purple")):
        evaluated = [(e, float(r[key])) for e, r in zip(epochs, rows, strict=True) if r.get(key) not in ("", None)]
        if evaluated:
            axes[2].plot(*zip(*evaluated, strict=True), marker="o", ms=3, color=colour, label=label)
    if axes[2].lines:
        axes[2].legend(loc="lower right", fontsize=8)
    axes[2].set_title("validation")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylim(0, 1)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def pyplot() -> types.ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display needed)."""
    # Imported on the first plot, not with this module: the backend must be chosen before pyplot is imported,
    # and matplotlib costs about 0.5 s that commands drawing nothing (predict, serve, --help) need not pay.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend: see above

    return plt


def plot_pr_curves(report: MetricReport, out_path: str | Path) -> None:
    """Each class's precision-recall curve (its all-point AP50 in the legend) and the mean of the classes'
    interpolated curves (bold); classes without objects are left out."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    many = len(report.class_names) > 12
    envelopes = []
    for k, name in enumerate(report.class_names):
        if report.num_positives[k] == 0:
            continue
        curve = report.curves[k]
        envelopes.append(curve.envelope()[0])
        label = None if many else f"{name} {report.ap50[k]:.3f}"
        r = [0.0, *curve.recall.tolist()]
        p = [1.0, *curve.precision.tolist()]
        ax.plot(r, p, lw=0.8 if many else 1.2, color="grey" if many else palette_colour(k + 1), label=label)
    if envelopes:
        mean = [sum(col) / len(col) for col in zip(*envelopes, strict=True)]
        recall = [i / (len(mean) - 1) for i in range(len(mean))]
        ax.plot(recall, mean, lw=3, color="tab:blue", label=f"all classes {report.map50:.3f} mAP@0.5")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"Precision-recall at IoU 0.5 ({report.num_images} images)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def plot_confusion_matrix(
    matrix: Tensor, class_names: Sequence[str], out_path: str | Path, conf: float, iou: float
) -> None:
    """The ``(C + 1, C + 1)`` matrix of :func:`~singleshot.metrics.confusion_matrix` (rows: true class, columns:
    predicted class, background last), each row normalised to 1 with the raw counts written in the cells."""
    plt = pyplot()
    order = [*range(1, len(class_names) + 1), 0]  # background last, as people read it
    m = matrix[order][:, order].double()
    names = [*class_names, "background"]
    rows = m.sum(dim=1, keepdim=True)
    shown = (m / rows.clamp(min=1)).numpy()
    n = len(names)
    size = min(4 + 0.45 * n, 20)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), names, rotation=90 if n > 8 else 0, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        counts = m.long().tolist()
        for i in range(n):
            for j in range(n):
                if counts[i][j]:
                    colour = "white" if shown[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{shown[i, j]:.2f}\n({counts[i][j]})", ha="center", va="center", fontsize=7,
                            color=colour)  # fmt: skip  # keywords grouped by line
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (score >= {conf:g}, IoU > {iou:g}; rows sum to 1)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
