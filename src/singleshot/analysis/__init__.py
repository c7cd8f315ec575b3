"""Error analysis: why a detector fails and what to change (``singleshot analyze``).

* :func:`analyze_detections` (:mod:`.diagnosis`) runs every analysis on ``(detections, ground truths, class
  names)``, the contract of :func:`singleshot.metrics.evaluate_detections`;
* :mod:`.tide` (TIDE's error types and dAPs), :mod:`.coco_curves` (cocodataset.org's analyze curves),
  :mod:`.sensitivity` (the SSD paper's Fig. 3 and 4), :mod:`.prior_split` (misses no default box reaches);
* :mod:`.html` writes ``report.html``; :mod:`.predictions` reads COCO results files; :mod:`.command` is
  ``singleshot analyze``.

Above :mod:`singleshot.evaluation` (it runs weights through the same path as ``singleshot val``); nothing but the
command line uses it.
"""

from singleshot.analysis.coco_curves import CocoCurves, coco_curves
from singleshot.analysis.diagnosis import Analysis, analyze_detections
from singleshot.analysis.prior_split import PriorSplit, prior_split
from singleshot.analysis.sensitivity import RankedErrors, Sensitivity, ranked_errors, sensitivity
from singleshot.analysis.tide import TideReport, tide_errors

__all__ = [
    "Analysis",
    "CocoCurves",
    "PriorSplit",
    "RankedErrors",
    "Sensitivity",
    "TideReport",
    "analyze_detections",
    "coco_curves",
    "prior_split",
    "ranked_errors",
    "sensitivity",
    "tide_errors",
]
