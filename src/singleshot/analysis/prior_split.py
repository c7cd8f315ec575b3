"""What only an SSD tool can say about a miss: whether any default box could have caught the object.

SSD learns an object only through the default boxes matched to it (paper section 2.2: best match, then IoU >= 0.5).
An object that no default box overlaps at IoU >= 0.5 after the model's resize is matched only through the forced
best-box step, with poor regression targets: missing it, or boxing it badly, is a default-box design problem, which
``singleshot priors --optimize`` fixes. A missed object that a default box did cover was lost to training or
capacity. This splits TIDE's ``Miss`` and ``Loc`` errors (:mod:`.tide`) by that rule, per class and per size, with
each object's best default-box IoU measured as ``singleshot priors`` measures it
(:func:`singleshot.tools.prior_coverage.coverage`), so that the share of uncovered objects is the same number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from singleshot.analysis.tide import SIZES, TideReport, size_index
from singleshot.boxes import box_area

#: A default box "reaches" an object at this IoU (paper section 2.2's matching threshold).
REACH_IOU = 0.5


@dataclass(frozen=True)
class PriorSplit:
    """Missed objects and localisation errors split by default-box coverage.

    ``uncovered_share``: share of every object of the split (difficult ones included, as ``singleshot priors``
    counts them) whose best default-box IoU is below :data:`REACH_IOU`. ``rows``: per group (``all``, each class,
    each size), the counts ``missed_uncovered``, ``missed_covered``, ``loc_uncovered``, ``loc_covered``, and
    ``objects`` / ``uncovered`` (non-difficult objects of the group, and those no default box reaches).
    """

    uncovered_share: float
    rows: dict[str, dict[str, int]]

    def share(self, group: str = "all", kind: str = "missed") -> float:
        """Share of the group's ``missed`` (or ``loc``) errors whose object no default box reaches (nan: none)."""
        row = self.rows[group]
        total = row[f"{kind}_uncovered"] + row[f"{kind}_covered"]
        return row[f"{kind}_uncovered"] / total if total else math.nan

    def table(self) -> str:
        lines = [
            f"objects no default box reaches at IoU {REACH_IOU}: {self.uncovered_share:.1%} of the split",
            f"{'group':<14} {'objects':>8} {'uncovered':>10} {'missed':>7} {'no box':>7} {'loc err':>8} {'no box':>7}",
        ]
        for group, row in self.rows.items():
            missed = row["missed_uncovered"] + row["missed_covered"]
            loc = row["loc_uncovered"] + row["loc_covered"]
            lines.append(
                f"{group:<14} {row['objects']:>8} {row['uncovered']:>10} {missed:>7} {row['missed_uncovered']:>7} "
                f"{loc:>8} {row['loc_uncovered']:>7}"
            )
        return "\n".join(lines)


def prior_split(
    tide: TideReport,
    best_prior_iou: Sequence[Tensor],
    ground_truths: Sequence[dict],
    class_names: Sequence[str],
) -> PriorSplit:
    """Split ``tide``'s ``Miss`` and ``Loc`` errors by whether a default box reaches their object.

    Args:
        tide: :func:`~singleshot.analysis.tide.tide_errors` of these ground truths.
        best_prior_iou: per image, ``(G,)`` each object's best default-box IoU (every object of the image's target,
            in its order, difficult ones included).
        ground_truths: the targets (``boxes`` (G, 4) xyxy pixels, ``labels``, optional ``difficult``).
        class_names: the ``C`` names of labels 1..C.
    """
    groups = ["all", *class_names, *(name for name, _, _ in SIZES)]
    rows = {g: dict.fromkeys(("objects", "uncovered", *_KINDS), 0) for g in groups}
    covered_all: list[bool] = []
    for i, (best, gt) in enumerate(zip(best_prior_iou, ground_truths, strict=True)):
        if len(best) != len(gt["labels"]):
            raise ValueError(f"image {i}: {len(best)} default-box IoUs for {len(gt['labels'])} objects")
        covered = (best >= REACH_IOU).tolist()
        covered_all += covered
        difficult = gt.get("difficult")
        hard = [False] * len(covered) if difficult is None else difficult.tolist()
        areas = box_area(gt["boxes"].double()).tolist()
        for j, label in enumerate(gt["labels"].tolist()):
            if hard[j]:
                continue
            for g in _groups_of(label, areas[j], class_names):
                rows[g]["objects"] += 1
                rows[g]["uncovered"] += not covered[j]
    for error in tide.errors:
        if error.kind not in ("Miss", "Loc") or error.target < 0:
            continue
        gt = ground_truths[error.image]
        reached = bool(best_prior_iou[error.image][error.target] >= REACH_IOU)
        key = f"{'missed' if error.kind == 'Miss' else 'loc'}_{'covered' if reached else 'uncovered'}"
        for g in _groups_of(int(gt["labels"][error.target]), error.area, class_names):
            rows[g][key] += 1
    share = sum(not c for c in covered_all) / len(covered_all) if covered_all else math.nan
    return PriorSplit(share, rows)


_KINDS = ("missed_uncovered", "missed_covered", "loc_uncovered", "loc_covered")


def _groups_of(label: int, area: float, class_names: Sequence[str]) -> list[str]:
    """The rows an object of class ``label`` and box ``area`` counts in: all, its class, its size."""
    return ["all", class_names[label - 1], SIZES[int(size_index(np.array(area)))][0]]


__all__ = ["REACH_IOU", "PriorSplit", "prior_split"]
