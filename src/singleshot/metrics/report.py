""":class:`MetricReport`: the VOC and COCO figures of one evaluation, printed as a table or saved as JSON, and
:func:`evaluate_detections`, which computes them."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import numpy as np

from singleshot.metrics.coco import COCO_STATS, coco_evaluate, coco_ground_truth, coco_per_class_ap, coco_results
from singleshot.metrics.voc import PRCurve, class_aps, match_detections, pr_curve
from singleshot.types import Detection, Target


@dataclass
class MetricReport:
    """Per-class and mean metrics of one evaluation, with the PR curves behind them.

    ``ap50_07`` / ``ap50``: VOC AP at IoU 0.5, 11-point and all-point, ``nan`` for classes without positives
    (left out of the means). ``coco``: the :data:`COCO_STATS` summary and ``coco_ap``: AP@[.5:.95] per class,
    when COCO metrics were computed. ``timing``: seconds spent (``inference``, ``metrics``), when known.
    """

    class_names: list[str]
    num_images: int
    _: KW_ONLY
    num_positives: list[int]
    num_detections: list[int]
    ap50_07: list[float]
    ap50: list[float]
    curves: list[PRCurve] = field(repr=False)
    coco: dict[str, float] | None = None
    coco_ap: list[float] | None = None
    timing: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _mean(values: Sequence[float]) -> float:
        valid = [v for v in values if not math.isnan(v)]
        return sum(valid) / len(valid) if valid else math.nan

    @property
    def map50_07(self) -> float:
        """Mean VOC2007 11-point AP at IoU 0.5 over classes with positives (the paper's VOC figure)."""
        return self._mean(self.ap50_07)

    @property
    def map50(self) -> float:
        """Mean all-point (VOC2010+) AP at IoU 0.5 over classes with positives."""
        return self._mean(self.ap50)

    def summary(self) -> dict[str, float]:
        """The headline figures: ``mAP50_voc07``, ``mAP50``, and the COCO stats when present."""
        out = {"mAP50_voc07": self.map50_07, "mAP50": self.map50}
        if self.coco is not None:
            out.update({f"coco_{k}": v for k, v in self.coco.items()})
        return out

    def table(self) -> str:
        """A plain-text table: one row per class, then the means and the COCO summary."""
        width = max([len("class"), len("all")] + [len(n) for n in self.class_names])
        cols = ["objects", "dets", "AP50 (07)", "AP50"] + (["AP"] if self.coco_ap is not None else [])
        lines = [f"{'class':<{width}}  " + "  ".join(f"{c:>9}" for c in cols)]

        def fmt(v: float) -> str:
            return f"{'-':>9}" if math.isnan(v) else f"{v:9.4f}"

        for k, name in enumerate(self.class_names):
            row = [
                f"{self.num_positives[k]:9d}",
                f"{self.num_detections[k]:9d}",
                fmt(self.ap50_07[k]),
                fmt(self.ap50[k]),
            ]
            if self.coco_ap is not None:
                row.append(fmt(self.coco_ap[k]))
            lines.append(f"{name:<{width}}  " + "  ".join(row))
        total = [f"{sum(self.num_positives):9d}", f"{sum(self.num_detections):9d}", fmt(self.map50_07), fmt(self.map50)]
        if self.coco is not None:
            total.append(fmt(self.coco["AP"]))
        lines.append(f"{'all':<{width}}  " + "  ".join(total))
        if self.coco is not None:
            lines.append("COCO  " + "  ".join(f"{k} {v:.4f}" for k, v in self.coco.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        """JSON-ready: means, per-class figures, and each class's interpolated PR curve at 101 recall points."""
        classes = []
        for k, name in enumerate(self.class_names):
            precision, score = self.curves[k].envelope()
            classes.append(
                {
                    "name": name,
                    "objects": self.num_positives[k],
                    "detections": self.num_detections[k],
                    "ap50_voc07": _json_float(self.ap50_07[k]),
                    "ap50": _json_float(self.ap50[k]),
                    **({"ap": _json_float(self.coco_ap[k])} if self.coco_ap is not None else {}),
                    "pr_curve": {
                        "recall": np.linspace(0, 1, 101).round(2).tolist(),
                        "precision": precision,
                        "score": score,
                    },
                }
            )
        return {
            "images": self.num_images,
            "summary": {k: _json_float(v) for k, v in self.summary().items()},
            "coco": self.coco,
            "timing": self.timing,
            "classes": classes,
        }

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else v


def evaluate_detections(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    class_names: Sequence[str],
    *,
    iou_threshold: float = 0.5,
    coco: bool = True,
    image_ids: Sequence[int] | None = None,
    category_ids: Sequence[int] | None = None,
    pixel_indices: bool = False,
) -> MetricReport:
    """All metrics of ``detections`` against ``ground_truths`` (same image order, original image coordinates).

    Args:
        detections: per image ``{"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,) in 1..C}``.
        ground_truths: per image ``{"boxes" (G, 4) xyxy, "labels" (G,), "difficult" (G,) bool (optional)}``.
        class_names: the ``C`` names of labels 1..C.
        coco: also run ``pycocotools`` (AP@[.5:.95] and friends).
        image_ids, category_ids: ids written into the COCO structures (see :func:`coco_ground_truth`).
        pixel_indices: VOC devkit IoU (inclusive pixel indices) for the VOC figures (module docstring).
    """
    num_classes = len(class_names)
    matches = match_detections(detections, ground_truths, num_classes, iou_threshold, pixel_indices)
    curves = [pr_curve(matches, c) for c in range(1, num_classes + 1)]
    npos = matches.num_positives[1:].tolist()
    ap07, ap = class_aps(curves, npos, True), class_aps(curves, npos, False)
    ndet = [int(((matches.labels == c) & ~matches.ignored).sum()) for c in range(1, num_classes + 1)]
    report = MetricReport(
        list(class_names),
        len(ground_truths),
        num_positives=npos,
        num_detections=ndet,
        ap50_07=ap07,
        ap50=ap,
        curves=curves,
    )
    if coco:
        evaluator = coco_evaluate(
            coco_ground_truth(ground_truths, class_names, image_ids, category_ids),
            coco_results(detections, image_ids, category_ids),
        )
        report.coco = {k: float(v) for k, v in zip(COCO_STATS, evaluator.stats, strict=True)}
        report.coco_ap = coco_per_class_ap(evaluator)
    return report
