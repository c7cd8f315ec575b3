"""The precision-recall curves of COCO's "analyze" page (cocodataset.org, detection eval), computed fast.

For each category and each area range (all / small / medium / large), seven curves at COCO's 101 recall
thresholds, each one a step further in forgiving the detector's errors (:data:`CURVES`):

* ``C75``, ``C50``: PR at IoU .75 and .50 (COCO's ordinary rules, as ``COCOeval``);
* ``Loc``: PR at IoU .10: localisation errors forgiven, duplicate detections still false positives;
* ``Sim``: PR at IoU .10 once supercategory confusions are forgiven (only with ``supercategories``);
* ``Oth``: PR at IoU .10 once every class confusion is forgiven;
* ``BG``: PR once background false positives are forgiven too: precision 1 wherever ``Oth`` is above 0, that is
  up to the highest recall the detector reaches at IoU .10;
* ``FN``: PR once the missed objects are forgiven too: precision 1 at every recall (the whole area).

What the official code does, followed here (cocoapi ``MatlabAPI/CocoEval.m``, ``analyze``; the Python
``pycocotools`` has no ``analyze``): C75, C50 and Loc are one ordinary evaluation at ``iouThrs = [.75 .5 .1]``.
Sim and Oth evaluate, category by category, the detections of category ``k`` alone at IoU .1 with
``useCats = 0`` against the ground truth of the image: for Sim the objects of ``k``'s supercategory (those of other
supercategories are removed), for Oth every object, the objects of other categories having ``ignore = 1`` and
their ``iscrowd`` flag left as it was. So an object of another category is an ignored, non-crowd ground truth:
a detection of ``k`` falls back on it only when no free object of ``k`` qualifies (max IoU, ties to the later
object, as for any ignored ground truth), it uses the ordinary IoU, and it absorbs **one** detection of ``k``;
a second detection of ``k`` on the same object stays a false positive (a duplicate). Crowd regions (of any
category present in that pass) absorb any number, with COCO's crowd IoU (intersection over the detection's area).
BG is ``Oth > 0`` and FN is 1, as there. mmdetection's port
(``tools/analysis_tools/coco_error_analysis.py``) differs: it relabels other-category objects with ``ignore = 1``
*and* ``iscrowd = 1`` (``pycocotools`` overwrites ``ignore`` with ``iscrowd``), so each absorbs any number of
detections with crowd IoU, and its supercategory pass keeps the plain ground truth (its Sim equals its Loc).

Averages over categories follow ``pycocotools``: a category without a (non-crowd) object in an area range has
precision -1 there and is left out of the mean (the Matlab ``analyze`` sets such entries to 0 and averages them in).
All rules are ``COCOeval``'s, reproduced exactly (its results are equal to the last bit): at most 100 detections
per image and category (the highest scores, ties in the given order), IoU computed as ``maskApi``'s ``bbIou`` on
xywh boxes, objects ordered non-ignored first (stable), each detection taking the free non-ignored object of
highest IoU >= the threshold (equal IoUs: the later object), else the best ignored one, crowd regions reusable,
a detection matched to an ignored object or unmatched outside the area range dropped, detections of all images
ranked by score (stable), precision made monotone and read at recall ``0, .01, ..., 1`` (``searchsorted``, left).
``difficult`` objects are crowd regions and object areas are box areas, as :func:`singleshot.metrics.coco_ground_truth`
converts them.

Speed: matching is greedy, so sequential only within one (image, category) group; it runs "by rank": in round
``r`` the ``r``-th ranked detection of every group at once (at most 100 rounds), each taking its best free object
among its candidate pairs (the pairs of IoU >= .1, computed once). Several minutes of ``COCOeval`` become seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from singleshot.plots import pyplot
from singleshot.types import Detection, Target

#: The curves, in stacking order. Each forgives more than the one before it, but COCO's rules do not make C75 <= C50
#: <= Loc hold everywhere: a lower threshold can let a detection that fell on an ignored object (a crowd region, an
#: object outside the area range) take a real one instead (real objects come first), from a later detection.
CURVES: tuple[str, ...] = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
#: Area ranges, as ``pycocotools``' ``areaRngLbl``.
AREAS: tuple[str, ...] = ("all", "small", "medium", "large")
#: ``[lo, hi]`` object area (pixels²) of each range; outside means ``area < lo or area > hi``.
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
#: COCO's 101 recall thresholds, computed as ``pycocotools`` computes them.
RECALL_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
#: Detections kept per image and category (COCO's largest ``maxDets``).
MAX_DETECTIONS = 100
#: IoU threshold of each matched curve.
IOU_THRESHOLDS: dict[str, float] = {"C75": 0.75, "C50": 0.5, "Loc": 0.1, "Sim": 0.1, "Oth": 0.1}
#: Fill colour of each curve's band (the official ``makeplot``'s).
COLOURS: dict[str, tuple[float, float, float]] = {
    "C75": (1.0, 1.0, 1.0),
    "C50": (1.0, 1.0, 1.0),
    "Loc": (0.31, 0.51, 0.74),
    "Sim": (0.75, 0.31, 0.30),
    "Oth": (0.36, 0.90, 0.38),
    "BG": (0.50, 0.39, 0.64),
    "FN": (1.0, 0.6, 0.0),
}

_FP, _TP, _IGNORED = 0, 1, 2


@dataclass(frozen=True)
class CocoCurves:
    """The analyze curves of a dataset.

    ``recall`` (101,) the recall thresholds; ``precision[area][curve]`` (101,) the mean over categories with objects
    in that area range (-1 everywhere when none has); ``per_class[area][curve]`` (C, 101), -1 on the rows of
    categories without objects in that range; ``num_objects[area]`` (C,) non-crowd objects per category in that
    range. Areas are :data:`AREAS`, curves :data:`CURVES` (without ``Sim`` when no supercategories were given).
    """

    recall: np.ndarray
    precision: dict[str, dict[str, np.ndarray]]
    per_class: dict[str, dict[str, np.ndarray]]
    num_objects: dict[str, np.ndarray]
    class_names: tuple[str, ...]

    @property
    def curves(self) -> tuple[str, ...]:
        """The curves computed, in stacking order."""
        return tuple(self.precision[AREAS[0]])

    def area_under(self, area: str = "all", class_index: int | None = None) -> dict[str, float]:
        """Area under each curve (mean precision over the 101 recalls: the curve's AP), of the category mean or of
        class ``class_index`` (0-based); -1 where there are no objects."""
        if class_index is None:
            curves = self.precision[area]
        else:
            curves = {c: v[class_index] for c, v in self.per_class[area].items()}
        return {c: float(v.mean()) if v[0] > -1 else -1.0 for c, v in curves.items()}


@dataclass(frozen=True)
class _Flat:
    """A dataset flattened: detections (at most :data:`MAX_DETECTIONS` per image and category, in dataset order)
    and ground truths (image by image). Boxes are xywh float64 (``x``, ``y``, ``w``, ``h`` (N,) each)."""

    det_image: np.ndarray
    det_label: np.ndarray  # 0-based
    det_score: np.ndarray
    det_rank: np.ndarray  # place within its (image, category), 0 = highest score
    det_xywh: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    det_area: np.ndarray
    gt_image: np.ndarray
    gt_label: np.ndarray  # 0-based
    gt_crowd: np.ndarray
    gt_xywh: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    gt_area: np.ndarray


def _xywh(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(N, 4)`` xyxy float64 -> x, y, w, h, as :func:`singleshot.boxes.xyxy_to_xywh` converts them."""
    return boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def _flatten(detections: Sequence[Detection], ground_truths: Sequence[Target], num_classes: int) -> _Flat:
    if len(detections) != len(ground_truths):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truths)} images")
    if not ground_truths:
        raise ValueError("no images to evaluate")

    def cat(tensors: list[torch.Tensor], dtype: torch.dtype, shape: tuple[int, ...]) -> np.ndarray:
        tensors = [t.detach().cpu().to(dtype).reshape(-1, *shape) for t in tensors]
        return torch.cat(tensors).numpy() if tensors else np.zeros((0, *shape))

    det_counts = np.array([d["labels"].numel() for d in detections], dtype=np.int64)
    gt_counts = np.array([g["labels"].numel() for g in ground_truths], dtype=np.int64)
    det_boxes = cat([d["boxes"] for d in detections], torch.float64, (4,))
    det_score = cat([d["scores"] for d in detections], torch.float64, ())
    det_label = cat([d["labels"] for d in detections], torch.int64, ()) - 1
    gt_boxes = cat([g["boxes"] for g in ground_truths], torch.float64, (4,))
    gt_label = cat([g["labels"] for g in ground_truths], torch.int64, ()) - 1
    no_flags = [torch.zeros(n, dtype=torch.bool) for n in gt_counts.tolist()]
    gt_crowd = cat([g.get("difficult", z) for g, z in zip(ground_truths, no_flags, strict=True)], torch.bool, ())
    for name, labels in (("detection", det_label), ("ground-truth", gt_label)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} labels must be in 1..{num_classes}, got {labels.min() + 1}..{labels.max() + 1}")
    det_image = np.repeat(np.arange(len(detections)), det_counts)
    # rank within (image, category): score descending, ties in the given order (pycocotools' mergesort)
    index = np.arange(det_label.size)
    order = np.lexsort((index, -det_score, det_label, det_image))
    group = det_image[order] * num_classes + det_label[order]
    starts = _firsts(group)
    sizes = np.diff(np.r_[starts, group.size])
    rank = np.empty_like(index)
    rank[order] = index - np.repeat(starts, sizes)
    keep = rank < MAX_DETECTIONS
    det_boxes = det_boxes[keep]
    det_xywh = _xywh(det_boxes)
    gt_xywh = _xywh(gt_boxes)
    return _Flat(
        det_image=det_image[keep],
        det_label=det_label[keep],
        det_score=det_score[keep],
        det_rank=rank[keep],
        det_xywh=det_xywh,
        det_area=det_xywh[2] * det_xywh[3],  # loadRes: bbox w * h
        gt_image=np.repeat(np.arange(len(ground_truths)), gt_counts),
        gt_label=gt_label,
        gt_crowd=gt_crowd.astype(bool),
        gt_xywh=gt_xywh,
        gt_area=np.clip(gt_xywh[2], 0, None) * np.clip(gt_xywh[3], 0, None),  # box_area, as coco_ground_truth
    )


def _candidate_pairs(data: _Flat, num_images: int, min_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (detection, object) pair of an image with IoU >= ``min_iou``: detection and object indices and the
    IoU (``maskApi``'s ``bbIou``: crowd regions divide by the detection's area), ``(P,)`` each, ordered by the
    detection's rank, then detection, then IoU descending, then object descending (the later object wins ties)."""
    gt_counts = np.bincount(data.gt_image, minlength=num_images)
    gt_starts = np.cumsum(gt_counts) - gt_counts
    repeats = gt_counts[data.det_image]
    total = int(repeats.sum())
    det = np.repeat(np.arange(data.det_image.size), repeats)
    first = np.cumsum(repeats) - repeats
    gt = np.repeat(gt_starts[data.det_image] - first, repeats) + np.arange(total)
    dx, dy, dw, dh = (a[det] for a in data.det_xywh)
    gx, gy, gw, gh = (a[gt] for a in data.gt_xywh)
    iw = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    ih = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = iw * ih
    det_area = dw * dh
    union = np.where(data.gt_crowd[gt], det_area, (gw * gh + det_area) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where((iw > 0) & (ih > 0), inter / union, 0.0)
    keep = np.flatnonzero(iou >= min_iou)
    det, gt, iou = det[keep], gt[keep], iou[keep]
    order = np.lexsort((-gt, -iou, det, data.det_rank[det]))
    return det[order], gt[order], iou[order]


def _firsts(sorted_keys: np.ndarray) -> np.ndarray:
    """Positions of the first element of each run of equal values."""
    first = np.ones(sorted_keys.size, dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.flatnonzero(first)


def _match(
    det: np.ndarray,
    slot: np.ndarray,
    ignored: np.ndarray,
    crowd: np.ndarray,
    round_bounds: np.ndarray,
    num_dets: int,
    num_slots: int,
) -> np.ndarray:
    """COCO's greedy matching of candidate pairs (ordered as :func:`_candidate_pairs`), one detection rank at a time.

    ``slot`` (P,) names the object within the evaluation of the detection's (image, category) group (an object is
    taken once per group); ``ignored``/``crowd`` (P,) flag the object; ``round_bounds`` (R + 1,) delimit the pairs of
    each rank. Returns (num_dets,) int8: :data:`_TP` (took a non-ignored object), :data:`_IGNORED` (took an ignored
    one), else :data:`_FP` (unmatched).
    """
    status = np.full(num_dets, _FP, dtype=np.int8)
    taken = np.zeros(num_slots, dtype=bool)
    for r in range(round_bounds.size - 1):
        start, stop = round_bounds[r], round_bounds[r + 1]
        if start == stop:
            continue
        d, s, ig = det[start:stop], slot[start:stop], ignored[start:stop]
        free = ~taken[s]
        regular = np.flatnonzero(free & ~ig)
        if regular.size:
            regular = regular[_firsts(d[regular])]  # best pair of each detection: highest IoU, later object
            status[d[regular]] = _TP
            taken[s[regular]] = True
        fallback = np.flatnonzero(free & ig)
        if fallback.size:
            fallback = fallback[status[d[fallback]] == _FP]  # only detections without a non-ignored object
            fallback = fallback[_firsts(d[fallback])]
            status[d[fallback]] = _IGNORED
            taken[s[fallback[~crowd[start:stop][fallback]]]] = True  # crowd regions stay free
    return status


def _class_curves(
    codes: np.ndarray, order: np.ndarray, class_bounds: np.ndarray, num_objects: np.ndarray
) -> np.ndarray:
    """``pycocotools``' ``accumulate`` for every class: (C, 101) interpolated precision, -1 without objects.

    ``codes`` (D,) :data:`_TP` / :data:`_FP` / :data:`_IGNORED` per detection, ``order`` (D,) detections by class
    then score (stable), ``class_bounds`` (C + 1,) each class's slice of ``order``."""
    out = np.full((num_objects.size, RECALL_THRESHOLDS.size), -1.0)
    for k, n in enumerate(num_objects.tolist()):
        if n == 0:
            continue
        c = codes[order[class_bounds[k] : class_bounds[k + 1]]]
        hit = c[c != _IGNORED] == _TP  # ignored detections add no point of their own to the curve
        tp = np.cumsum(hit).astype(float)
        fp = np.cumsum(~hit).astype(float)
        recall = tp / n
        precision = tp / (fp + tp + np.spacing(1))
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
        reached = at < hit.size
        out[k] = 0.0
        out[k, reached] = envelope[at[reached]]
    return out


def coco_curves(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    class_names: Sequence[str],
    supercategories: Sequence[str] | None = None,
) -> CocoCurves:
    """The analyze curves (module docstring) of ``detections`` against ``ground_truths``, one entry per image each.

    Detections: ``boxes`` (D, 4) xyxy pixels, ``scores`` (D,), ``labels`` (D,) in 1..C; ground truths: ``boxes``
    (G, 4), ``labels`` (G,) in 1..C, optional ``difficult`` (G,) (crowd regions). ``supercategories``: one name per
    class (``C`` = ``len(class_names)``), or None for no ``Sim`` curve.
    """
    num_classes = len(class_names)
    if supercategories is not None and len(supercategories) != num_classes:
        raise ValueError(f"{len(supercategories)} supercategories for {num_classes} classes")
    data = _flatten(detections, ground_truths, num_classes)
    num_dets = data.det_label.size
    det, gt, iou = _candidate_pairs(data, len(ground_truths), min(IOU_THRESHOLDS.values()))
    det_label, gt_label = data.det_label[det], data.gt_label[gt]
    same_class = det_label == gt_label
    slot = gt * num_classes + det_label  # the object within its (image, detection category) evaluation
    crowd = data.gt_crowd[gt]
    # the pairs each matched curve's evaluation sees (all have IoU >= .1, the lowest threshold)
    eligible = {c: same_class & (iou >= min(IOU_THRESHOLDS[c], 1 - 1e-10)) for c in ("C75", "C50", "Loc")}
    if supercategories is not None:  # objects of k's supercategory
        _, super_of = np.unique(np.asarray(supercategories), return_inverse=True)
        eligible["Sim"] = super_of[det_label] == super_of[gt_label]
    eligible["Oth"] = np.ones_like(same_class)  # every object
    matched = [c for c in CURVES if c in eligible]

    # accumulation order: by class, then score descending, ties in dataset order (pycocotools' mergesort)
    order = np.lexsort((np.arange(num_dets), -data.det_score, data.det_label))
    class_bounds = np.searchsorted(data.det_label[order], np.arange(num_classes + 1))
    precision: dict[str, dict[str, np.ndarray]] = {a: {} for a in AREAS}
    per_class: dict[str, dict[str, np.ndarray]] = {a: {} for a in AREAS}
    num_objects: dict[str, np.ndarray] = {}
    outside_gt = {a: (data.gt_area < lo) | (data.gt_area > hi) for a, (lo, hi) in AREA_RANGES.items()}
    outside_det = {a: (data.det_area < lo) | (data.det_area > hi) for a, (lo, hi) in AREA_RANGES.items()}
    for a in AREAS:
        counted = ~data.gt_crowd & ~outside_gt[a]
        num_objects[a] = np.bincount(data.gt_label[counted], minlength=num_classes)
    for curve in matched:
        keep = np.flatnonzero(eligible[curve])
        c_det, c_gt, c_slot, c_crowd = det[keep], gt[keep], slot[keep], crowd[keep]
        c_other = ~same_class[keep]
        bounds = np.searchsorted(data.det_rank[c_det], np.arange(MAX_DETECTIONS + 1))
        for a in AREAS:
            ignored = c_crowd | outside_gt[a][c_gt] | c_other
            status = _match(c_det, c_slot, ignored, c_crowd, bounds, num_dets, data.gt_label.size * num_classes)
            codes = np.where((status == _FP) & outside_det[a], _IGNORED, status)
            per_class[a][curve] = _class_curves(codes, order, class_bounds, num_objects[a])
    for a in AREAS:
        present = num_objects[a] > 0
        absent = np.where(present, 0.0, -1.0)[:, None]
        per_class[a]["BG"] = np.where(present[:, None], (per_class[a]["Oth"] > 0).astype(float), absent)
        per_class[a]["FN"] = np.where(present[:, None], 1.0, absent).repeat(RECALL_THRESHOLDS.size, axis=1)
        for curve in CURVES:
            if curve in per_class[a]:
                rows = per_class[a][curve][present]
                precision[a][curve] = rows.mean(axis=0) if rows.size else np.full(RECALL_THRESHOLDS.size, -1.0)
        per_class[a] = {c: per_class[a][c] for c in CURVES if c in per_class[a]}
    return CocoCurves(RECALL_THRESHOLDS.copy(), precision, per_class, num_objects, tuple(class_names))


def _legend_ap(ap: float) -> str:
    """``[.xxx]`` as the official plots write areas (``[1.00]`` for 1)."""
    thousandths = round(ap * 1000)
    return "[1.00]" if thousandths >= 1000 else f"[.{thousandths:03d}]"


def plot_coco_curves(
    curves: CocoCurves, out_path: str | Path, area: str = "all", class_index: int | None = None
) -> None:
    """The stacked, filled analyze plot of cocodataset.org for one area range: of the category mean, or of class
    ``class_index`` (0-based), each band labelled with its curve's area (``[.xxx] C75``).

    Raises:
        ValueError: ``area`` is unknown, or there are no objects to plot in that range.
    """
    if area not in curves.precision:
        raise ValueError(f"unknown area {area!r}, expected one of {AREAS}")
    if class_index is None:
        shown, title = curves.precision[area], f"overall-{area}"
    else:
        shown = {c: v[class_index] for c, v in curves.per_class[area].items()}
        title = f"{curves.class_names[class_index]}-{area}"
    if shown["FN"][0] < 0:
        raise ValueError(f"{title}: no objects in this area range")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    below = np.zeros_like(curves.recall)
    for name, above in shown.items():
        label = f"{_legend_ap(float(above.mean()))} {name}"
        ax.fill_between(curves.recall, below, above, color=COLOURS[name], label=label, edgecolor="none")
        ax.plot(curves.recall, above, color="black", linewidth=0.6)
        below = above
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    legend = ax.legend(loc="lower left", fontsize=9)
    for patch in legend.get_patches():
        patch.set_edgecolor("black")
        patch.set_linewidth(0.5)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


__all__ = ["AREAS", "AREA_RANGES", "CURVES", "RECALL_THRESHOLDS", "CocoCurves", "coco_curves", "plot_coco_curves"]
