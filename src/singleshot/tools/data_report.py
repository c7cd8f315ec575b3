"""``singleshot check-data``: decode every image, report problems, class counts and box-size histograms."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from singleshot.config import Config, setting, shared
from singleshot.data.dataset import DetectionDataset
from singleshot.data.images import DataReport, ImageError, read_image
from singleshot.data.readers import open_dataset

#: Box-size bins: sqrt(box area) as a fraction of sqrt(image area).
SIZE_BINS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.01)


@dataclass
class CheckDataConfig(Config):
    """What ``singleshot check-data`` reads."""

    path: str = setting(help="dataset folder or file (VOC, COCO or YOLO; detected automatically)", positional=True)
    train_split: str = shared("train_split")
    val_split: str = shared("val_split")
    classes: list[str] | None = shared("classes")


def _histogram(values: Sequence[float], bins: Sequence[float] = SIZE_BINS, width: int = 30) -> list[str]:
    counts = [sum(lo <= v < hi for v in values) for lo, hi in itertools.pairwise(bins)]
    top = max(counts) or 1
    return [
        f"    {lo:>5.2f}-{min(hi, 1.0):<5.2f} {n:>7}  {'#' * math.ceil(width * n / top) if n else ''}"
        for (lo, hi), n in zip(itertools.pairwise(bins), counts, strict=True)
    ]


def inspect_split(ds: DetectionDataset, report: DataReport, progress: bool = True) -> list[str]:
    """Decode every image of ``ds`` (problems go to ``report``); lines of per-class counts and box sizes."""
    per_class = torch.zeros(len(ds.class_names) + 1, dtype=torch.long)
    difficult = 0
    sizes: list[float] = []
    empty = 0
    for path, apply_exif, target in tqdm(ds.items, desc=ds.name, disable=not progress, leave=False):
        try:
            image = read_image(path, apply_exif=apply_exif)
        except ImageError as exc:
            report.add(f"image unreadable when decoded: {exc.problem}", path)
            continue
        h, w = image.shape[-2:]
        per_class += torch.bincount(target["labels"], minlength=len(per_class))
        difficult += int(target["difficult"].sum())
        empty += int(target["labels"].numel() == 0)
        b = target["boxes"]
        sizes += ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clamp(min=0).sqrt().div(math.sqrt(h * w)).tolist()
    lines = [
        f"{ds.name}: {len(ds)} images, {int(per_class.sum())} objects ({difficult} difficult), {empty} without objects"
    ]
    width = max(len(n) for n in ds.class_names)
    lines += [f"    {name:<{width}}  {int(per_class[i + 1]):>7}" for i, name in enumerate(ds.class_names)]
    lines.append("  box size (sqrt(box area / image area)):")
    lines += _histogram(sizes)
    return lines


def run(config: CheckDataConfig, *, log: Callable[[str], None] = print) -> str:
    """``singleshot check-data``: decode every image and annotation of the dataset at ``config.path``; logs and
    returns the report (problems found and how they were handled, class counts, box sizes)."""
    config.validate()
    report = check_data(config.path, config.train_split, config.val_split, config.classes)
    log(report)
    return report


def check_data(path: str, train_split: str = "train", val_split: str = "val", classes: list[str] | None = None) -> str:
    """The full report for the dataset at ``path``."""
    bundle = open_dataset(path, train_split, val_split, classes)
    report = bundle.report or DataReport()
    lines = [bundle.description, f"classes ({len(bundle.class_names)}): {', '.join(bundle.class_names)}", ""]
    lines += inspect_split(bundle.train, report)
    lines += inspect_split(bundle.val, report)
    lines += ["", report.summary("problems found and how they were handled")]
    return "\n".join(lines)
