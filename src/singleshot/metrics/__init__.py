"""Detection metrics: Pascal VOC AP at IoU 0.5 (:mod:`.voc`), COCO metrics through ``pycocotools``
(:mod:`.coco`), a confusion matrix (:mod:`.confusion`), and :class:`MetricReport` (:mod:`.report`), which
holds them and prints or saves them. :func:`evaluate_detections` computes everything at once; :func:`class_thresholds`
(:mod:`.thresholds`) reads per-class score thresholds off a report's curves.

Boxes are xyxy pixels; detections and ground truths follow :mod:`singleshot.types`.
"""

from singleshot.metrics.coco import COCO_STATS, coco_evaluate, coco_ground_truth, coco_results
from singleshot.metrics.confusion import confusion_matrix
from singleshot.metrics.report import MetricReport, evaluate_detections
from singleshot.metrics.thresholds import (
    ClassThreshold,
    class_thresholds,
    threshold_f1,
    threshold_vector,
    thresholds_table,
)
from singleshot.metrics.voc import (
    VOC07_RECALL_THRESHOLDS,
    Matches,
    PRCurve,
    ap_from_pr,
    match_detections,
    pr_curve,
    voc_ap,
)

__all__ = [
    "COCO_STATS",
    "VOC07_RECALL_THRESHOLDS",
    "ClassThreshold",
    "Matches",
    "MetricReport",
    "PRCurve",
    "ap_from_pr",
    "class_thresholds",
    "coco_evaluate",
    "coco_ground_truth",
    "coco_results",
    "confusion_matrix",
    "evaluate_detections",
    "match_detections",
    "pr_curve",
    "threshold_f1",
    "threshold_vector",
    "thresholds_table",
    "voc_ap",
]
