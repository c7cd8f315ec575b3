"""Per-class score thresholds read off an evaluation's precision/recall curves (VOC rule, IoU 0.5).

A class's curve (:class:`~singleshot.metrics.voc.PRCurve`) gives precision and recall after each detection in rank
order; keeping the top ``k`` detections of a class is a score threshold between the ``k``-th score and the next.
:func:`class_thresholds` finds, per class, the ``k`` with the best F1 (``2 P R / (P + R)``) and, given a
``precision_target``, the largest ``k`` (the lowest threshold, the most recall) whose precision reaches it. Cuts
fall only between different scores (tied detections are kept or dropped together).

A threshold ``t`` is placed halfway between the lowest score kept and the highest score left out (0 when none is
left out), rounded to the fewest decimals that keep it in the middle half of that gap, so that ``score > t`` (the
post-processor's rule, :class:`~singleshot.postprocess.PostSettings`) and ``score >= t`` keep the same detections,
with a margin for runtimes whose scores differ by rounding (ONNX Runtime, bf16). :func:`threshold_f1` gives the F1
of any thresholds on the same curves, kept as the post-processor keeps them (``float32 score > float32
threshold``), e.g. to compare per-class thresholds with one global threshold.

A class without positives on the split, without detections, or whose detections are all false positives (no
threshold gives an F1 above 0) gets no threshold (None): the post-processing then uses the global ``conf`` for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from singleshot.metrics.report import MetricReport
from singleshot.metrics.voc import PRCurve


@dataclass(frozen=True)
class ClassThreshold:
    """The score thresholds of one class and what they keep on the evaluated split.

    ``threshold``: the best-F1 threshold (None: see the module docstring), with ``precision``, ``recall`` and
    ``f1`` of the detections it keeps (nan without a threshold). ``target_threshold``: the lowest threshold whose
    precision is at least ``precision_target`` (None when none reaches it or no target was asked), with
    ``target_precision`` and ``target_recall`` (nan without one).
    """

    name: str
    objects: int
    detections: int
    threshold: float | None = None
    precision: float = math.nan
    recall: float = math.nan
    f1: float = math.nan
    precision_target: float | None = None
    target_threshold: float | None = None
    target_precision: float = math.nan
    target_recall: float = math.nan


def _cut_points(scores: Tensor) -> Tensor:
    """``(D,)`` bool: whether a threshold can fall right after each rank (its score above the next one's, or the
    last rank); ``scores`` ``(D,)`` descending."""
    return torch.cat([scores[:-1] > scores[1:], torch.ones(1, dtype=torch.bool)])


def _threshold_after(scores: Tensor, k: int) -> float:
    """The threshold keeping the top ``k + 1`` of ``scores`` (``(D,)`` float64 holding float32 values, descending):
    halfway to the next score (0 after the last), rounded to the fewest decimals that keep it in the middle half of
    the gap and strictly between the two in float32; the next score itself where nothing is (two neighbouring
    float32 values)."""
    kept = float(scores[k])
    below = float(scores[k + 1]) if k + 1 < scores.numel() else 0.0
    low, high = torch.tensor([below, kept], dtype=torch.float32).tolist()
    halfway, quarter = (kept + below) / 2, (kept - below) / 4
    for threshold in [*(round(halfway, decimals) for decimals in range(1, 10)), halfway]:
        inside = abs(threshold - halfway) <= quarter
        if inside and low < float(torch.tensor(threshold, dtype=torch.float32)) < high:
            return threshold
    return below


def _f1(curve: PRCurve) -> Tensor:
    """``(D,)`` float64: F1 after each rank (0 where precision and recall are both 0)."""
    total = curve.precision + curve.recall
    return torch.where(total > 0, 2 * curve.precision * curve.recall / total.clamp(min=1e-300), 0.0)


def class_thresholds(report: MetricReport, precision_target: float | None = None) -> list[ClassThreshold]:
    """Per class of ``report`` (labels 1..C in order): the best-F1 score threshold and, with ``precision_target``
    (in [0, 1]), the lowest threshold reaching that precision (module docstring).

    Raises:
        ValueError: ``precision_target`` outside [0, 1].
    """
    if precision_target is not None and not 0 <= precision_target <= 1:
        raise ValueError(f"precision_target={precision_target} must be in [0, 1]")
    return [
        _one_class(name, report.curves[k], report.num_positives[k], precision_target)
        for k, name in enumerate(report.class_names)
    ]


def _one_class(name: str, curve: PRCurve, objects: int, precision_target: float | None) -> ClassThreshold:
    """:func:`class_thresholds` of one class: its curve (``D`` detections) and its number of positives."""
    none = ClassThreshold(name, objects, int(curve.scores.numel()), precision_target=precision_target)
    if objects == 0 or curve.scores.numel() == 0:
        return none
    cuts = _cut_points(curve.scores)
    f1 = torch.where(cuts, _f1(curve), -1.0)
    best = int(f1.argmax())  # the first of equal F1s: the fewest detections
    found = none
    if float(f1[best]) > 0:
        kept = {"precision": float(curve.precision[best]), "recall": float(curve.recall[best]), "f1": float(f1[best])}
        found = dataclasses.replace(none, threshold=_threshold_after(curve.scores, best), **kept)
    if precision_target is None:
        return found
    reaching = (cuts & (curve.precision >= precision_target) & (curve.recall > 0)).nonzero().flatten()
    if reaching.numel() == 0:
        return found
    last = int(reaching[-1])  # the most detections: the lowest threshold
    kept = {"target_precision": float(curve.precision[last]), "target_recall": float(curve.recall[last])}
    return dataclasses.replace(found, target_threshold=_threshold_after(curve.scores, last), **kept)


def threshold_vector(
    thresholds: Sequence[ClassThreshold], which: Literal["f1", "target"] = "f1"
) -> tuple[float | None, ...]:
    """The per-class thresholds (labels 1..C) as post-processing and weight files take them
    (:attr:`PostSettings.class_conf <singleshot.postprocess.PostSettings.class_conf>`): the best-F1 ones, or with
    ``which="target"`` the precision-target ones; None where a class has none."""
    if which not in ("f1", "target"):
        raise ValueError(f"which must be 'f1' or 'target', got {which!r}")
    return tuple(t.threshold if which == "f1" else t.target_threshold for t in thresholds)


def threshold_f1(report: MetricReport, conf: float | Sequence[float | None], fallback: float = 0.0) -> list[float]:
    """F1 of each class of ``report`` when keeping its detections whose score exceeds ``conf`` (one threshold for
    all classes, or one per class with None entries taking ``fallback``), compared in float32 as the post-processor
    compares them; nan for classes without positives.

    Raises:
        ValueError: a threshold vector of the wrong length.
    """
    num_classes = len(report.class_names)
    per_class = [conf] * num_classes if isinstance(conf, (int, float)) else list(conf)
    if len(per_class) != num_classes:
        raise ValueError(f"{len(per_class)} thresholds for {num_classes} classes")
    out = []
    for k, t in enumerate(per_class):
        curve, objects = report.curves[k], report.num_positives[k]
        if objects == 0:
            out.append(math.nan)
            continue
        limit = torch.tensor(fallback if t is None else t, dtype=torch.float32)
        kept = int((curve.scores.float() > limit).sum())  # scores descending: the top `kept` detections
        out.append(float(_f1(curve)[kept - 1]) if kept else 0.0)
    return out


def _mean(values: Sequence[float]) -> float:
    valid = [v for v in values if not math.isnan(v)]
    return sum(valid) / len(valid) if valid else math.nan


def thresholds_table(report: MetricReport, thresholds: Sequence[ClassThreshold], baseline: float | None = None) -> str:
    """A plain-text table of ``thresholds`` (from :func:`class_thresholds` on ``report``): per class the objects,
    detections, best-F1 threshold with its precision, recall and F1, the precision-target threshold and its recall
    when one was asked; with ``baseline``, also the F1 at that one global threshold. The last row: mean F1 over
    classes with objects, of the per-class thresholds (classes without one at ``baseline``, else at 0) and of
    ``baseline``."""
    width = max([len("class"), len("all")] + [len(t.name) for t in thresholds])
    target = next((t.precision_target for t in thresholds if t.precision_target is not None), None)
    cols = ["objects", "dets", "threshold", "precision", "recall", "F1"]
    cols += [f"F1 @{baseline:g}"] if baseline is not None else []
    cols += [f"P>={target:g} at", "recall"] if target is not None else []

    def fmt(v: float | None) -> str:
        return f"{'-':>9}" if v is None or math.isnan(v) else f"{v:9.3f}"

    at_baseline = threshold_f1(report, baseline) if baseline is not None else []
    lines = [f"{'class':<{width}}  " + "  ".join(f"{c:>9}" for c in cols)]
    for k, t in enumerate(thresholds):
        row = [f"{t.objects:9d}", f"{t.detections:9d}", fmt(t.threshold), fmt(t.precision), fmt(t.recall), fmt(t.f1)]
        row += [fmt(at_baseline[k])] if baseline is not None else []
        row += [fmt(t.target_threshold), fmt(t.target_recall)] if target is not None else []
        lines.append(f"{t.name:<{width}}  " + "  ".join(row))
    ours = _mean(threshold_f1(report, threshold_vector(thresholds), fallback=baseline or 0.0))
    total = [f"{sum(t.objects for t in thresholds):9d}", f"{sum(t.detections for t in thresholds):9d}"]
    total += [fmt(None)] * 3 + [fmt(ours)] + ([fmt(_mean(at_baseline))] if baseline is not None else [])
    lines.append(f"{'all':<{width}}  " + "  ".join(total))
    return "\n".join(lines)
