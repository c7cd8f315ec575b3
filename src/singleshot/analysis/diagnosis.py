""":func:`analyze_detections`: every analysis of one set of detections against its ground truth, and what a user
should do about it.

* :mod:`.tide` -- TIDE's error types and what fixing each would gain (overall, per class, per size);
* :mod:`.coco_curves` -- cocodataset.org's analyze curves (C75, C50, Loc, Sim, Oth, BG, FN);
* :mod:`.sensitivity` -- the SSD paper's Fig. 3 (top-ranked detections by kind) and Fig. 4 (normalised AP by
  object size and aspect ratio);
* :mod:`.prior_split` -- missed and badly placed objects that no default box reaches (a design problem);
* :mod:`singleshot.metrics.thresholds` -- per-class score thresholds (best F1, a target precision).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

from singleshot.analysis.coco_curves import CocoCurves, coco_curves
from singleshot.analysis.prior_split import PriorSplit, prior_split
from singleshot.analysis.sensitivity import (
    DETECTION_MULTIPLES,
    FP_TYPES,
    RankedErrors,
    Sensitivity,
    paper_figures,
)
from singleshot.analysis.tide import MAIN_ERRORS, TideReport, tide_errors
from singleshot.metrics import MetricReport, evaluate_detections
from singleshot.metrics.thresholds import ClassThreshold, class_thresholds, threshold_f1, threshold_vector
from singleshot.types import Detection, Target

#: The global threshold per-class thresholds are compared with: ``singleshot predict``'s default.
GLOBAL_CONF = 0.25
#: An error type "dominates" a class when its dAP is the largest and at least this many AP points.
_NOTABLE_DAP = 1.0


@dataclass
class Analysis:
    """Everything :func:`analyze_detections` found. ``timing``: seconds per part."""

    class_names: list[str]
    metrics: MetricReport
    tide: TideReport
    curves: CocoCurves
    ranked: RankedErrors
    sensitivity: Sensitivity
    thresholds: list[ClassThreshold]
    priors: PriorSplit | None = None
    timing: dict[str, float] = field(default_factory=dict)

    def dominant(self, class_name: str | None = None) -> str | None:
        """The main error type with the largest dAP (overall or of one class); None when none reaches 1 point."""
        row = self.tide.main if class_name is None else self.tide.per_class[class_name]
        values = {k: row[k] for k in MAIN_ERRORS if not math.isnan(row[k])}
        if not values:
            return None
        kind = max(values, key=lambda k: values[k])
        return kind if values[kind] >= _NOTABLE_DAP else None

    def f1_at(self) -> tuple[float, float]:
        """Mean F1 over classes at the per-class best-F1 thresholds, and at one global :data:`GLOBAL_CONF`."""
        ours = threshold_f1(self.metrics, threshold_vector(self.thresholds), fallback=GLOBAL_CONF)
        single = threshold_f1(self.metrics, GLOBAL_CONF)
        return _mean(ours), _mean(single)

    def advice(self) -> list[str]:
        """What to change, one line per finding, from the figures (the rules are in the lines themselves)."""
        lines = []
        groups = [(None, "overall")] + [(name, name) for name in self.class_names]
        for name, label in groups:
            kind = self.dominant(name)
            if kind is None:
                continue
            row = self.tide.main if name is None else self.tide.per_class[name]
            lines.append(f"{label}: {kind} errors cost the most ({row[kind]:.1f} AP points). {_ADVICE[kind]}")
            if self.priors is not None and kind in ("Miss", "Loc"):
                key = "missed" if kind == "Miss" else "loc"
                share = self.priors.share(name or "all", key)
                if not math.isnan(share):
                    cause = (
                        "a default-box design problem: run `singleshot priors --optimize` and train with the fitted "
                        "--default-boxes"
                        if share >= 0.5
                        else "a training or capacity problem (a default box did cover most of them)"
                    )
                    lines.append(f"  {share:.0%} of those objects have no default box at IoU 0.5: mostly {cause}.")
        small = self.tide.by_size.get("small", {})
        worst = max(
            ((size, sum(row[k] for k in MAIN_ERRORS)) for size, row in self.tide.by_size.items()),
            key=lambda x: x[1],
            default=(None, 0.0),
        )
        if worst[0] == "small" and worst[1] >= _NOTABLE_DAP:
            lines.append(
                f"small objects (area < 32²) carry the largest errors ({small.get('Miss', 0.0):.1f} AP points of "
                "misses): a larger input (--imgsz), zoom-out augmentation (--augment ssd) or smaller default boxes."
            )
        ours, single = self.f1_at()
        if not math.isnan(ours):
            lines.append(
                f"per-class score thresholds: mean F1 {ours:.3f} vs {single:.3f} at one global {GLOBAL_CONF} "
                "(--save-thresholds writes them into the weights; predict and serve then use them)."
            )
        return lines

    def table(self) -> str:
        """The summary printed by ``singleshot analyze``."""
        parts = [self.metrics.table(), "", self.tide.table()]
        areas = self.curves.area_under("all")
        parts += [
            "",
            "COCO analyze (area under each curve, all sizes): " + "  ".join(f"{k} {v:.3f}" for k, v in areas.items()),
        ]
        if self.priors is not None:
            parts += ["", self.priors.table()]
        return "\n".join(parts)

    def to_dict(self) -> dict:
        """JSON-ready: the figures of every part (what ``metrics.json`` of ``singleshot analyze`` holds)."""
        mean_ap, size_ap, aspect_ap = self.sensitivity.mean()
        ours, single = self.f1_at()
        return {
            "images": self.metrics.num_images,
            "classes": self.class_names,
            "metrics": self.metrics.summary(),
            "tide": self.tide.to_dict(),
            "coco_curves": {area: self.curves.area_under(area) for area in self.curves.precision},
            "ranked_errors": {
                "kinds": list(FP_TYPES),
                "multiples": list(DETECTION_MULTIPLES),
                "shares": self.ranked.cumulative().tolist(),
            },
            "sensitivity": {
                "ap_n": _clean(self.sensitivity.ap_n.tolist()),
                "mean_ap_n": _none_nan(mean_ap),
                "size_ap": _clean(size_ap.tolist()),
                "aspect_ap": _clean(aspect_ap.tolist()),
            },
            "priors": None
            if self.priors is None
            else {"uncovered_share": self.priors.uncovered_share, "rows": self.priors.rows},
            "thresholds": [_clean_dict(vars(t)) for t in self.thresholds],
            "f1": {"per_class_thresholds": _none_nan(ours), f"global_{GLOBAL_CONF}": _none_nan(single)},
            "advice": self.advice(),
            "timing": self.timing,
        }


_ADVICE = {
    "Cls": "The model confuses classes: more examples of the confused classes, or merge classes people cannot tell "
    "apart.",
    "Loc": "Boxes are found but placed badly: train longer, check that annotations are drawn consistently.",
    "Both": "Detections near objects of other classes, badly placed: usually resolves with more training.",
    "Dupe": "Several boxes on one object: a lower NMS IoU (--iou) suppresses them.",
    "Bkg": "False alarms on background: train on more background (images without objects, longer training); what "
    "users see is cut by the per-class score thresholds below.",
    "Miss": "Objects are not detected at all: see whether default boxes reach them (below), more training data.",
}


def _mean(values: Sequence[float]) -> float:
    valid = [v for v in values if not math.isnan(v)]
    return sum(valid) / len(valid) if valid else math.nan


def _none_nan(v: float) -> float | None:
    return None if math.isnan(v) else v


def _clean(values: list) -> list:
    return [_clean(v) if isinstance(v, list) else _none_nan(v) for v in values]


def _clean_dict(d: dict) -> dict:
    return {k: _none_nan(v) if isinstance(v, float) else v for k, v in d.items()}


def analyze_detections(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    class_names: Sequence[str],
    *,
    supercategories: Sequence[str] | None = None,
    best_prior_iou: Sequence[Tensor] | None = None,
    precision_target: float | None = None,
    pixel_indices: bool = False,
) -> Analysis:
    """Every analysis (module docstring) of ``detections`` against ``ground_truths`` (same images, same order).

    Args:
        detections: per image ``{"boxes" (D, 4) xyxy pixels, "scores" (D,), "labels" (D,) in 1..C}``.
        ground_truths: per image ``{"boxes" (G, 4), "labels" (G,), "difficult" (G,) bool (optional)}``.
        class_names: the ``C`` names of labels 1..C.
        supercategories: one per class (COCO's); classes sharing one are similar (the Sim curves and errors).
        best_prior_iou: per image, ``(G,)`` each object's best default-box IoU after the model's resize
            (:func:`singleshot.tools.prior_coverage.coverage`); None leaves out the default-box split.
        precision_target: also find each class's lowest threshold reaching this precision.
        pixel_indices: VOC devkit IoU for the VOC AP figures (``singleshot val``'s rule for VOC data).

    Raises:
        ValueError: no images, or detections and ground truths of different lengths.
    """
    if not ground_truths:
        raise ValueError("no images to analyse (the split is empty)")
    if len(detections) != len(ground_truths):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truths)} images")
    timing: dict[str, float] = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal start
        now = time.perf_counter()
        timing[name] = now - start
        start = now

    metrics = evaluate_detections(detections, ground_truths, class_names, coco=False, pixel_indices=pixel_indices)
    thresholds = class_thresholds(metrics, precision_target)
    lap("metrics_s")
    tide = tide_errors(detections, ground_truths, class_names)
    lap("tide_s")
    curves = coco_curves(detections, ground_truths, class_names, supercategories)
    lap("coco_curves_s")
    ranked, sens = paper_figures(detections, ground_truths, class_names, supercategories, pixel_indices)
    lap("sensitivity_s")
    priors = None if best_prior_iou is None else prior_split(tide, best_prior_iou, ground_truths, class_names)
    lap("priors_s")
    return Analysis(list(class_names), metrics, tide, curves, ranked, sens, thresholds, priors, timing)


__all__ = ["GLOBAL_CONF", "Analysis", "analyze_detections"]
