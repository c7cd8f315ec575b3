"""TIDE: which kind of error costs a detector how much AP (Bolya et al., ECCV 2020, "TIDE: A General Toolbox for
Identifying Object Detection Errors"), with the rules of its reference implementation (``dbolya/tide``, package
``tidecv`` 1.0.1), which the tests hold these figures to.

Per image, detections ranked by score (the first ``max_dets`` kept) are matched greedily to objects of their class
(the free object of highest IoU, the first on ties; a match needs IoU >= ``pos_iou``). An unmatched detection that
covers an ignored region of its class (VOC ``difficult``, COCO crowd: intersection over the detection's area above
``pos_iou``) counts neither way. Every unmatched detection, ignored ones included, gets the first error type that
fits, in TIDE's order:

* ``Loc`` -- its best IoU with an object of its class is in ``[bg_iou, pos_iou]``;
* ``Cls`` -- IoU >= ``pos_iou`` with an object of another class;
* ``Dupe`` -- IoU >= ``pos_iou`` with an object of its class that a higher-scoring detection took;
* ``Bkg`` -- IoU <= ``bg_iou`` with every object (or the image has none);
* ``Both`` -- the rest (wrong class and badly placed);

and every object no detection took, and that no ``Cls``/``Loc`` error could take, is a ``Miss``. The dAP of a type
is the AP gained by fixing only that type with TIDE's oracle: a ``Cls`` or ``Loc`` error becomes a true positive of
its object (only the highest-scoring one per free object; the others are removed), ``Dupe``, ``Bkg`` and ``Both``
errors are removed, a ``Miss`` is taken out of the object count. Each type is fixed on its own, so the dAPs need not
add up; a negative change reads 0, as TIDE's does. The special ``FalsePos`` dAP scores every true positive above
every false positive; ``FalseNeg`` takes every missed object out of the count.

AP is TIDE's: AP at ``pos_iou`` per class, COCO's 101-point interpolation, times 100, averaged over every class
that has objects or detections (a class with detections and no object counts as 0). What TIDE lacks is here too:
the dAP of each type for small, medium and large objects (COCO's limits, box area): the AP gained by fixing only the
errors of that type whose object (or, for errors without one, whose detection) is of that size, as TIDE's own
unimplemented size qualifiers were meant to do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from singleshot.boxes import box_area, box_intersection, box_iou
from singleshot.types import Detection, Target

#: TIDE's main error types, in its order.
MAIN_ERRORS: tuple[str, ...] = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
#: TIDE's special error types: perfect precision, perfect recall.
SPECIAL_ERRORS: tuple[str, ...] = ("FalsePos", "FalseNeg")
#: COCO's size ranges of box area in pixels (small: up to 32², medium: up to 96²).
SIZES: tuple[tuple[str, float, float], ...] = (
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, math.inf),
)
_CLS, _LOC, _BOTH, _DUPE, _BKG, _MISS = range(6)


def size_index(areas: np.ndarray) -> np.ndarray:
    """Index into :data:`SIZES` of each box area (COCO's rule: small up to 32², medium up to 96², then large)."""
    return np.searchsorted(np.array([high for _, _, high in SIZES[:-1]]), areas, side="left")


@dataclass(frozen=True)
class TideError:
    """One error: its type (:data:`MAIN_ERRORS`), the image index, the detection's index in that image's
    detections as given (-1 for a ``Miss``), the object's index in its ground truth (-1 when none is involved:
    ``Bkg``, ``Both``, ``Dupe``), the detection's score (0 for a ``Miss``) and the object's (or detection's) area."""

    kind: str
    image: int
    detection: int
    target: int
    score: float
    area: float


@dataclass(frozen=True)
class TideReport:
    """What :func:`tide_errors` measured. dAPs and APs are in AP points (0-100), as TIDE prints them.

    ``per_class``: per class name, ``{"AP", dAP of each main and special type}`` (``AP`` nan for a class with
    neither objects nor detections). ``by_size``: per size name, the dAP of each main type and the errors counted.
    """

    ap: float
    main: dict[str, float]
    special: dict[str, float]
    counts: dict[str, int]
    per_class: dict[str, dict[str, float]]
    by_size: dict[str, dict[str, float]]
    errors: list[TideError] = field(repr=False)

    def table(self) -> str:
        """The overall figures and the size breakdown as plain text."""
        names = list(MAIN_ERRORS) + list(SPECIAL_ERRORS)
        lines = [f"TIDE  AP50 {self.ap:.2f}", f"{'':8}" + "".join(f"{n:>9}" for n in names)]
        lines.append(f"{'dAP':8}" + "".join(f"{v:9.2f}" for v in [*self.main.values(), *self.special.values()]))
        lines.append(f"{'count':8}" + "".join(f"{self.counts[n]:9d}" for n in MAIN_ERRORS))
        for size, row in self.by_size.items():
            lines.append(f"{size:8}" + "".join(f"{row[n]:9.2f}" for n in MAIN_ERRORS))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready (nan as None)."""

        def clean(d: dict) -> dict:
            return {k: clean(v) if isinstance(v, dict) else (None if _isnan(v) else v) for k, v in d.items()}

        return clean(
            {"AP50": self.ap, "main": self.main, "special": self.special, "counts": self.counts,
             "by_size": self.by_size, "per_class": self.per_class}
        )  # fmt: skip  # one line per group of keys


def _isnan(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _class_aps(
    cls: np.ndarray, score: np.ndarray, true: np.ndarray, npos: np.ndarray, present: np.ndarray
) -> np.ndarray:
    """TIDE's AP (0-100) of each class 0..C from points in insertion order; nan where a class is not ``present``.

    Args:
        cls, score, true: ``(N,)`` the points, in TIDE's insertion order.
        npos: ``(C + 1,)`` objects per class; present: ``(C + 1,)`` bool, the classes averaged.
    """
    aps = np.full(len(npos), np.nan)
    aps[present] = 0.0
    order = np.lexsort((np.arange(len(cls)), -score, cls))  # class, then score descending, then insertion
    cls, true = cls[order], true[order].astype(np.float64)
    starts = np.searchsorted(cls, np.arange(len(npos)), side="left")
    ends = np.searchsorted(cls, np.arange(len(npos)), side="right")
    grid = np.arange(101) / 100
    for c in np.flatnonzero(present & (npos > 0)):
        hits = true[starts[c] : ends[c]]
        if hits.size == 0:
            continue
        tp = np.cumsum(hits)
        precision = tp / np.arange(1, hits.size + 1)
        recall = tp / npos[c]
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, grid, side="left")
        aps[c] = precision[at[at < hits.size]].sum() / 101 * 100
    return aps


@dataclass
class _Run:
    """Everything one pass over the images collects; fixes recombine it without another pass."""

    num_classes: int
    # AP points of the unfixed run, in TIDE's insertion order
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    true: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    npos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unmatched: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # objects no detection took
    # errors, in TIDE's order: type, original point (class, score; has: whether it is in the AP data), fix
    kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    err_cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    err_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    err_has: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    fix_cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # 0: the fix removes it
    err_area: np.ndarray = field(default_factory=lambda: np.zeros(0))
    records: list[TideError] = field(default_factory=list)

    def present(self, cls: np.ndarray, npos: np.ndarray) -> np.ndarray:
        """``(C + 1,)`` bool: the classes TIDE averages over, those with points or objects."""
        has = np.zeros(self.num_classes + 1, bool)
        has[cls] = True
        return has | (npos > 0)

    def fixed_aps(self, fix: np.ndarray | None = None, perfect_precision: bool = False, perfect_recall: bool = False):
        """Per-class APs (``(C + 1,)``) after fixing the errors marked in ``fix`` (TIDE's ``fix_errors``: its
        points are the errors, in order, then the true positives, an order that breaks score ties differently)."""
        fix = np.zeros(len(self.kind), bool) if fix is None else fix
        keep_orig = ~fix & self.err_has
        fixed_point = fix & (self.fix_cls > 0)
        first = np.flatnonzero(keep_orig | fixed_point)  # errors, in order, each as its original or fixed point
        cls = np.where(fixed_point, self.fix_cls, self.err_cls)[first]
        score, true = self.err_score[first], fixed_point[first]
        correct = self.true
        cls = np.concatenate([cls, self.cls[correct]])
        score = np.concatenate([score, self.score[correct]])
        true = np.concatenate([true, np.ones(int(correct.sum()), bool)])
        npos = self.npos - np.bincount(self.err_cls[fix & (self.kind == _MISS)], minlength=self.num_classes + 1)
        if perfect_precision:
            score = true.astype(np.float64)
        if perfect_recall:
            npos = npos - self.unmatched
        return _class_aps(cls, score, true, npos, self.present(cls, npos))


def _mean(aps: np.ndarray) -> float:
    valid = aps[~np.isnan(aps)]
    return float(valid.mean()) if valid.size else math.nan


def _image(
    run_parts: dict[str, list], i: int, det: Detection, gt: Target, pos_iou: float, bg_iou: float, max_dets: int
) -> None:
    """Match one image and classify its errors (module docstring), appending to ``run_parts``."""
    scores = det["scores"].detach().cpu().double()
    order = torch.argsort(-scores, stable=True)[:max_dets]
    d_boxes = det["boxes"].detach().cpu().double()[order]
    d_labels = det["labels"].detach().cpu().long()[order].numpy()
    d_scores = scores[order].numpy()
    d_index = order.numpy()
    ignore = gt.get("difficult")
    ignore = torch.zeros(len(gt["labels"]), dtype=torch.bool) if ignore is None else ignore.detach().cpu().bool()
    g_all_boxes = gt["boxes"].detach().cpu().double()
    g_index = torch.nonzero(~ignore).flatten().numpy()
    g_boxes, g_labels = g_all_boxes[~ignore], gt["labels"].detach().cpu().long()[~ignore].numpy()
    g_area = box_area(g_boxes).numpy()
    d_area = box_area(d_boxes).numpy()
    n, g = len(d_labels), len(g_labels)
    run_parts["npos"].append(g_labels)
    used = np.zeros(n, bool)
    matched_to = np.full(n, -1)
    g_used = np.zeros(g, bool)
    iou = box_iou(d_boxes, g_boxes).numpy() if n and g else np.zeros((n, g))
    same = d_labels[:, None] == g_labels[None, :]
    cls_iou = iou * same
    if n and g:
        for p in np.flatnonzero((cls_iou >= pos_iou).any(axis=1)):  # only these can match
            row = np.where(g_used, 0.0, cls_iou[p])
            j = int(np.argmax(row))
            if row[j] >= pos_iou:
                used[p], matched_to[p], g_used[j] = True, j, True
    ignored = np.zeros(n, bool)
    r_boxes, r_labels = g_all_boxes[ignore], gt["labels"].detach().cpu().long()[ignore].numpy()
    if n and len(r_labels):
        crowd = box_intersection(d_boxes, r_boxes).numpy()  # over the detection's area, as COCO's crowd IoU
        crowd = np.divide(crowd, d_area[:, None], out=np.zeros_like(crowd), where=d_area[:, None] > 0)
        ignored = ~used & ((crowd > pos_iou) & (d_labels[:, None] == r_labels[None, :])).any(axis=1)
    run_parts["cls"].append(d_labels[~ignored])
    run_parts["score"].append(d_scores[~ignored])
    run_parts["true"].append(used[~ignored])

    best: dict[int, tuple[float, int]] = {}  # free object -> (best score, error position) among Cls/Loc errors
    errors: list[tuple[int, int, int]] = []  # (kind, detection position, object) in TIDE's order
    for p in np.flatnonzero(~used):
        if g == 0:
            errors.append((_BKG, p, -1))
            continue
        j = int(np.argmax(cls_iou[p]))
        if bg_iou <= cls_iou[p, j] <= pos_iou:
            errors.append((_LOC, p, j))
        else:
            other = iou[p] * ~same[p]
            j = int(np.argmax(other))
            if other[j] >= pos_iou:
                errors.append((_CLS, p, j))
            elif (cls_iou[p] * g_used).max() >= pos_iou:
                errors.append((_DUPE, p, -1))
            elif iou[p].max() <= bg_iou:
                errors.append((_BKG, p, -1))
            else:
                errors.append((_BOTH, p, -1))
        kind, _, j = errors[-1]
        if kind in (_LOC, _CLS) and not g_used[j] and (j not in best or best[j][0] < d_scores[p]):
            best[j] = (float(d_scores[p]), len(errors) - 1)
    usable = {j for kind, _, j in errors if kind in (_LOC, _CLS) and not g_used[j]}
    winners = {position for _, position in best.values()}
    for position, (kind, p, j) in enumerate(errors):
        fix_cls = 0
        if kind in (_LOC, _CLS) and position in winners:
            fix_cls = int(g_labels[j]) if kind == _CLS else int(d_labels[p])
        area = float(g_area[j]) if j >= 0 else float(d_area[p])
        run_parts["errors"].append((kind, int(d_labels[p]), float(d_scores[p]), not ignored[p], fix_cls, area))
        target = int(g_index[j]) if j >= 0 else -1
        run_parts["records"].append(TideError(MAIN_ERRORS[kind], i, int(d_index[p]), target, float(d_scores[p]), area))
    for j in np.flatnonzero(~g_used):
        run_parts["unmatched"].append(int(g_labels[j]))
        if j not in usable:
            run_parts["errors"].append((_MISS, int(g_labels[j]), 0.0, False, 0, float(g_area[j])))
            run_parts["records"].append(TideError("Miss", i, -1, int(g_index[j]), 0.0, float(g_area[j])))


def tide_errors(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    class_names: Sequence[str],
    *,
    pos_iou: float = 0.5,
    bg_iou: float = 0.1,
    max_dets: int = 100,
) -> TideReport:
    """TIDE's error breakdown (module docstring) of ``detections`` against ``ground_truths``.

    Args:
        detections: per image ``{"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,) in 1..C}``.
        ground_truths: per image ``{"boxes" (G, 4) xyxy, "labels" (G,) in 1..C, "difficult" (G,) bool (optional:
            ignored regions)}``, the same images in the same order.
        class_names: the ``C`` names of labels 1..C.
        pos_iou, bg_iou: TIDE's foreground and background IoU thresholds (t_f, t_b).
        max_dets: detections kept per image, highest scores first (TIDE's COCO setting: 100).
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truths)} images")
    num_classes = len(class_names)
    parts: dict[str, list] = {k: [] for k in ("cls", "score", "true", "npos", "errors", "records", "unmatched")}
    for i, (det, gt) in enumerate(zip(detections, ground_truths, strict=True)):
        _image(parts, i, det, gt, pos_iou, bg_iou, max_dets)
    run = _Run(num_classes)
    run.cls = np.concatenate(parts["cls"]) if parts["cls"] else run.cls
    run.score = np.concatenate(parts["score"]) if parts["score"] else run.score
    run.true = np.concatenate(parts["true"]) if parts["true"] else run.true
    labels = np.concatenate(parts["npos"]) if parts["npos"] else np.zeros(0, np.int64)
    run.npos = np.bincount(labels, minlength=num_classes + 1)
    run.unmatched = np.bincount(np.asarray(parts["unmatched"], np.int64), minlength=num_classes + 1)
    errors = parts["errors"]
    run.kind = np.array([e[0] for e in errors], np.int64)
    run.err_cls = np.array([e[1] for e in errors], np.int64)
    run.err_score = np.array([e[2] for e in errors], np.float64)
    run.err_has = np.array([e[3] for e in errors], bool)
    run.fix_cls = np.array([e[4] for e in errors], np.int64)
    run.err_area = np.array([e[5] for e in errors], np.float64)
    run.records = parts["records"]
    return _report(run, list(class_names))


def _report(run: _Run, class_names: list[str]) -> TideReport:
    """The dAPs of every fix of ``run``, overall, per class and per size."""
    base = _class_aps(run.cls, run.score, run.true, run.npos, run.present(run.cls, run.npos))  # insertion order
    ap = _mean(base)
    per_class = {name: {"AP": float(base[c + 1])} for c, name in enumerate(class_names)}
    main: dict[str, float] = {}
    for k, name in enumerate(MAIN_ERRORS):
        aps = run.fixed_aps(run.kind == k)
        main[name] = max(_mean(aps) - ap, 0.0)
        for c, row in enumerate(per_class.values()):
            row[name] = max(float(aps[c + 1] - base[c + 1]), 0.0) if not math.isnan(base[c + 1]) else math.nan
    special: dict[str, float] = {}
    for name, aps in (
        ("FalsePos", run.fixed_aps(perfect_precision=True)),
        ("FalseNeg", run.fixed_aps(perfect_recall=True)),
    ):
        special[name] = _mean(aps) - ap
        for c, row in enumerate(per_class.values()):
            row[name] = float(aps[c + 1] - base[c + 1])
    counts = {name: int((run.kind == k).sum()) for k, name in enumerate(MAIN_ERRORS)}
    by_size: dict[str, dict[str, float]] = {}
    sizes = size_index(run.err_area)
    for s, (size, _, _) in enumerate(SIZES):
        inside = sizes == s
        row: dict[str, float] = {}
        for k, name in enumerate(MAIN_ERRORS):
            row[name] = max(_mean(run.fixed_aps((run.kind == k) & inside)) - ap, 0.0)
            row[f"{name} count"] = float(((run.kind == k) & inside).sum())
        by_size[size] = row
    return TideReport(ap, main, special, counts, per_class, by_size, run.records)


__all__ = ["MAIN_ERRORS", "SIZES", "SPECIAL_ERRORS", "TideError", "TideReport", "size_index", "tide_errors"]
