"""Scoring a tracking run against ground truth with an established evaluator: the ``trackers`` package's
``evaluate_mot_sequence``, which reimplements TrackEval's MOT Challenge matching and its HOTA, CLEAR (MOTA, ID
switches) and Identity (IDF1) metrics, checked against TrackEval by its authors. Both files are MOT Challenge text:
``frame,id,x,y,w,h,conf,...`` with 1-based frames; ground-truth rows count when their 7th column is not 0 and
their class (8th column, when present) is 1, as in MOT17.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The figures :func:`score_mot` returns (``HOTA``, ``DetA``, ``AssA``, ``MOTA``, ``IDF1`` as shares in [0, 1];
#: ``IDSW`` ID switches, ``Frag`` fragmentations, the counts of matched, missed and false boxes).
SUMMARY = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "Frag", "CLR_TP", "CLR_FN", "CLR_FP")


def score_mot(ground_truth: str | Path, tracked: str | Path) -> dict[str, Any]:
    """HOTA, CLEAR and Identity metrics of the MOT file ``tracked`` against ``ground_truth`` (IoU 0.5 for CLEAR
    and Identity; HOTA over IoU 0.05..0.95).

    Returns:
        ``{"summary": {name: value for name in SUMMARY}, "HOTA": {...}, "CLEAR": {...}, "Identity": {...}}``, every
        figure the evaluator gives.

    Raises:
        FileNotFoundError: a file that does not exist (named).
        ValueError: a file that is not MOT text (named).
    """
    for path in (ground_truth, tracked):
        if not Path(path).is_file():
            raise FileNotFoundError(f"MOT file not found: {path}")
        if not Path(path).read_text().strip():
            raise ValueError(f"{path}: no rows (no tracks), nothing to score")
    # imported on first use: the evaluator (with supervision) costs 0.6 s that runs without --eval need not pay
    from trackers.eval import evaluate_mot_sequence

    result = evaluate_mot_sequence(ground_truth, tracked, metrics=["CLEAR", "HOTA", "Identity"]).to_dict()
    families = {k: result[k] for k in ("HOTA", "CLEAR", "Identity")}
    merged = {name: value for family in families.values() for name, value in family.items()}
    return {"summary": {name: merged[name] for name in SUMMARY}, **families}


def summary_line(summary: dict[str, Any]) -> str:
    """``HOTA 91.2  DetA ...  IDSW 3 ...``: shares as percentages, counts as integers."""
    return "  ".join(f"{k} {v * 100:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())


__all__ = ["SUMMARY", "score_mot", "summary_line"]
