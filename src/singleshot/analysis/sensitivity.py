"""The SSD paper's error analysis (Liu et al. 2016, section 3.1, Figs. 3 and 4), after Hoiem, Chodpathumwan and
Dai, "Diagnosing error in object detectors" (ECCV 2012), whose toolkit the SSD authors ran (their copy:
github.com/weiliu89/detectionAnalysis; the definitions below are read from its ``src/*.m`` files).

Fig. 3, :func:`ranked_errors`: each detection of a class, in rank order, is one of ``FP_TYPES``:

* ``Cor``: a true positive under the VOC rule (:func:`singleshot.metrics.voc.match_detections`: IoU > 0.5, the
  first detection of an object wins); detections the VOC rule ignores (matched to a ``difficult`` object) are
  left out of the ranking;
* ``Loc``: not correct, but IoU >= 0.1 with an object of its class: poor localisation, or a duplicate detection
  of an object already found (``analyzeFalsePositives.m``: weak matching, ``iuthresh_weak = 0.1``);
* ``Sim``: otherwise, IoU >= 0.1 with an object of a similar class;
* ``Oth``: otherwise, IoU >= 0.1 with an object of any other class;
* ``BG``: the rest (``isbg_notobj``).

Objects marked ``difficult`` count as objects in these overlap tests, as in the toolkit. Similar classes share a
supercategory; for Pascal VOC's 20 classes, :data:`VOC_SIMILAR_GROUPS` are the toolkit's ``similar_classes``
(``setDatasetParameters.m``). The curves follow ``displayDetectionTrend.m`` (the top row: the share of each
type among the top detections, as a multiple of the number of objects, 1/8x to 8x) and ``displayFPTrend.m`` (the
bottom row: the share of each false-positive type among the top 25 to 3200 false positives).

Fig. 4, :func:`sensitivity`: Hoiem's normalised AP (``averagePrecisionNormalized.m``) by object size and aspect
ratio. Normalised precision replaces the number of true positives ``R·n`` (recall times the class's objects) by
``R·N`` for one fixed ``N``, so that classes with many or few objects compare: ``P_N = R·N / (R·N + F)`` with
``F`` the false positives and ``N = 0.15 × number of images`` (``NORM_FRACT = 0.15; nposNorm =
NORM_FRACT*det.nimages`` in ``detectionAnalysisScript.m``). AP_N is the all-point area under the monotone
envelope of ``P_N`` (the sum of the envelope at each true positive over the number of objects). The non-difficult
objects of each class are split by percentiles of their area (``w·h``) and aspect ratio (``w/h``)
(``analyzeTrueDetections.m``): sorted ascending, the cut points are the values at positions
``round(f·n)`` for ``f = 0.1, 0.3, 0.7, 0.9`` (1-based), and an object lies in the bucket of the number of cut
points it exceeds: XS/XT the smallest/tallest 10 %, S/T the next 20 %, M the middle 40 %, L/W the next 20 %,
XL/XW the top 10 %. For a bucket, only its objects count as positives; a detection matched to an object of
another bucket counts neither way; false positives stay false positives.

Boxes are xyxy pixels, continuous coordinates unless ``pixel_indices`` (the VOC devkit's and the toolkit's
``+ 1``), as in :mod:`singleshot.metrics.voc`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from singleshot.metrics.voc import Matches, match_detections
from singleshot.plots import pyplot
from singleshot.types import Detection, Target

#: Detection types of Fig. 3, in the order of :attr:`RankedErrors.kinds`' values.
FP_TYPES: tuple[str, ...] = ("Cor", "Loc", "Sim", "Oth", "BG")
COR, LOC, SIM, OTH, BG = range(5)
#: Fig. 4's buckets: object area, smallest first; aspect ratio (width / height), tallest first.
SIZE_BUCKETS: tuple[str, ...] = ("XS", "S", "M", "L", "XL")
ASPECT_BUCKETS: tuple[str, ...] = ("XT", "T", "M", "W", "XW")
#: Cumulative fractions of each class's objects at the bucket boundaries (10 %, 20 %, 40 %, 20 %, 10 %).
BUCKET_CUTS: tuple[float, ...] = (0.1, 0.3, 0.7, 0.9)
#: Hoiem's ``NORM_FRACT``: the normalised precision's number of objects per class, per image.
NORMALISED_FRACTION = 0.15
#: Weak-match IoU: a false positive overlapping an object this much is about that object (Loc, Sim, Oth).
WEAK_IOU = 0.1
#: Fig. 3's x axes: top detections as multiples of the number of objects, and counts of top false positives.
DETECTION_MULTIPLES: tuple[float, ...] = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)
FALSE_POSITIVE_COUNTS: tuple[int, ...] = (25, 50, 100, 200, 400, 800, 1600, 3200)

#: Pascal VOC's classes (the names of :data:`singleshot.convert.files.VOC_CLASSES`, a floor above this module).
VOC_CLASS_NAMES: frozenset[str] = frozenset(
    ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
     "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
)  # fmt: skip  # a table of names, a dozen to a line
#: Hoiem's similar VOC classes (``similar_classes`` of ``setDatasetParameters.m``): any two classes of one group
#: are similar. Animals include the person; aeroplane and bird are also similar ("air objects").
VOC_SIMILAR_GROUPS: tuple[tuple[str, ...], ...] = (
    ("bird", "cat", "cow", "dog", "horse", "person", "sheep"),
    ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"),
    ("chair", "diningtable", "sofa"),
    ("aeroplane", "bird"),
)
#: The toolkit's ``summary_sets``: the columns of the SSD paper's Fig. 3 (animals without the person).
VOC_SUPERCATEGORIES: dict[str, tuple[str, ...]] = {
    "animals": ("bird", "cat", "cow", "dog", "horse", "sheep"),
    "vehicles": ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"),
    "furniture": ("chair", "diningtable", "sofa"),
}

#: Classes to aggregate: a class index (0-based, into ``class_names``) or name, several, or None for all.
Classes = int | str | Sequence[int | str] | None


@dataclass(frozen=True)
class RankedErrors:
    """Every detection the VOC rule does not ignore, typed (Fig. 3), sorted by class then by decreasing score.

    ``labels`` (D,) int64 in 1..C, ``scores`` (D,) float64, ``images`` (D,) image indices, ``kinds`` (D,) int64
    index into :data:`FP_TYPES`, ``found_weak`` (D,) int64 the number of objects that this detection is the first of
    its class to overlap with IoU >= 0.1 (for the weak recall), ``num_objects`` (C,) non-difficult objects per class.
    """

    class_names: tuple[str, ...]
    labels: Tensor
    scores: Tensor
    images: Tensor
    kinds: Tensor
    found_weak: Tensor
    num_objects: Tensor

    def class_labels(self, classes: Classes = None) -> list[int]:
        """The labels (1..C) of ``classes``: indices into ``class_names`` or names; None: every class."""
        if classes is None:
            return list(range(1, len(self.class_names) + 1))
        chosen = [classes] if isinstance(classes, int | str) else list(classes)
        return sorted({(self.class_names.index(c) if isinstance(c, str) else int(c)) + 1 for c in chosen})

    def cumulative(self, classes: Classes = None, multiples: Sequence[float] = DETECTION_MULTIPLES) -> Tensor:
        """Share of each of :data:`FP_TYPES` among the top detections, ``(len(multiples), 5)`` float64, rows summing
        to 1 (``nan`` where there is no detection to count); Fig. 3's top row.

        The top ``ceil(t · n)`` detections for multiple ``t``, with ``n`` the number of objects of the class, or for
        several classes the rounded mean over them; several classes' detections are taken in turn by rank (each
        class's first, then each class's second, ...), as ``displayDetectionTrend.m`` sums them (that code takes
        whole ranks at a time and counts BG twice in the running total it compares with ``t · n``; neither is
        copied here). Past the end of the list, the shares of the whole list.
        """
        labels = self.class_labels(classes)
        counts = _cumulative_counts(self._interleaved(labels, self.kinds), len(FP_TYPES))
        n = round(float(self.num_objects[[c - 1 for c in labels]].double().mean())) if labels else 0
        at = [min(math.ceil(t * n - 1e-9), counts.shape[0] - 1) for t in multiples]
        return _shares(counts[at])

    def false_positives(self, classes: Classes = None, counts: Sequence[int] = FALSE_POSITIVE_COUNTS) -> Tensor:
        """Share of Loc, Sim, Oth and BG among the top ``counts`` false positives, ``(len(counts), 4)`` float64
        (several classes' false positives taken in turn by rank, as ``displayFPTrend.m`` sums them); Fig. 3's
        bottom row. Past the end of the list, the shares of all the false positives."""
        labels = self.class_labels(classes)
        fp = self.kinds != COR
        interleaved = self._interleaved(labels, self.kinds[fp] - 1, self.labels[fp])
        cum = _cumulative_counts(interleaved, len(FP_TYPES) - 1)
        return _shares(cum[[min(int(k), cum.shape[0] - 1) for k in counts]])

    def recall(self, classes: Classes = None, multiples: Sequence[float] = DETECTION_MULTIPLES) -> Tensor:
        """Recall of the top ``ceil(t · n)`` detections of each class, ``(len(multiples), 2)`` float64: the VOC
        recall (IoU > 0.5, Fig. 3's solid red line) and the weak recall (objects overlapped with IoU >= 0.1 by a
        detection of their class, the dashed line), averaged over the classes with objects (``nan``: none).

        The weak recall counts an object once some top detection overlaps it; the toolkit's one-to-one weak matching
        (``fixloc``) can count a little less where one detection overlaps two objects."""
        out = torch.zeros(len(multiples), 2, dtype=torch.float64)
        labels = [c for c in self.class_labels(classes) if self.num_objects[c - 1] > 0]
        for c in labels:
            mine = self.labels == c
            hits = torch.stack(((self.kinds[mine] == COR).long(), self.found_weak[mine]), dim=1)
            cum = _cumulative_counts(hits, None)
            n = int(self.num_objects[c - 1])
            out += cum[[min(math.ceil(t * n - 1e-9), cum.shape[0] - 1) for t in multiples]] / n
        return out / len(labels) if labels else out.fill_(math.nan)

    def _interleaved(self, labels: Sequence[int], values: Tensor, value_labels: Tensor | None = None) -> Tensor:
        """``values`` of the classes ``labels`` (given in class-then-rank order, their classes ``value_labels``,
        default :attr:`labels`), reordered by rank within their class, classes in turn at each rank."""
        value_labels = self.labels if value_labels is None else value_labels
        keep = torch.isin(value_labels, torch.tensor(labels, dtype=torch.long))
        values, value_labels = values[keep], value_labels[keep]
        starts = torch.searchsorted(value_labels, value_labels, right=False)  # first position of each one's class
        rank = torch.arange(values.shape[0]) - starts
        return values[torch.argsort(rank, stable=True)]


@dataclass(frozen=True)
class Sensitivity:
    """Normalised AP (Fig. 4) per class: overall ``ap_n`` (C,), and per bucket of :data:`SIZE_BUCKETS` and
    :data:`ASPECT_BUCKETS` ``size_ap`` / ``aspect_ap`` (C, 5) float64 (``nan`` where a bucket has no objects);
    ``size_objects`` / ``aspect_objects`` (C, 5) objects per bucket; ``size_cuts`` (C, 4) area and ``aspect_cuts``
    (C, 4) width/height at the bucket boundaries (an object equal to a cut lies below it; ``nan``: no objects);
    ``normaliser`` Hoiem's ``N``."""

    class_names: tuple[str, ...]
    ap_n: Tensor
    size_ap: Tensor
    aspect_ap: Tensor
    size_objects: Tensor
    aspect_objects: Tensor
    size_cuts: Tensor
    aspect_cuts: Tensor
    normaliser: float

    def mean(self) -> tuple[float, Tensor, Tensor]:
        """The means over classes (those with objects) of ``ap_n``, ``size_ap`` (5,) and ``aspect_ap`` (5,)."""
        return float(self.ap_n.nanmean()), self.size_ap.nanmean(dim=0), self.aspect_ap.nanmean(dim=0)

    def impact(self, min_objects: int = 5) -> dict[str, tuple[float, float]]:
        """Hoiem's sensitivity summary (``displayAverageSensitivityImpactPlot.m``): for size and aspect ratio, the
        mean over classes of the worst and of the best bucket AP_N, among buckets of at least ``min_objects``
        objects. Sensitivity is best - worst; impact is best - the mean ``ap_n``."""
        out = {}
        for name, ap, n in (("size", self.size_ap, self.size_objects), ("aspect", self.aspect_ap, self.aspect_objects)):
            valid = (n >= min_objects) & ~ap.isnan()
            rows = valid.any(dim=1)
            worst = ap.masked_fill(~valid, math.inf).amin(dim=1)[rows]
            best = ap.masked_fill(~valid, -math.inf).amax(dim=1)[rows]
            out[name] = (float(worst.mean()), float(best.mean())) if rows.any() else (math.nan, math.nan)
        return out


def ranked_errors(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    class_names: Sequence[str],
    supercategories: Sequence[str] | None = None,
    pixel_indices: bool = False,
) -> RankedErrors:
    """Type every detection (module docstring) for Fig. 3.

    ``supercategories``: one per class; classes sharing one are similar. None: Hoiem's :data:`VOC_SIMILAR_GROUPS`
    when ``class_names`` are Pascal VOC's 20, else no class is similar to another (no ``Sim`` errors).
    """
    data = _Dataset.gather(detections, ground_truths, class_names, pixel_indices)
    return _ranked_errors(data, class_names, supercategories)


def _ranked_errors(data: _Dataset, class_names: Sequence[str], supercategories: Sequence[str] | None) -> RankedErrors:
    """:func:`ranked_errors` on gathered data."""
    similar = _similarity(class_names, supercategories)
    best = data.best_overlaps(similar)
    keep = ~data.matches.ignored
    kinds = torch.full_like(data.det_labels, BG)
    kinds[best[:, 2] >= WEAK_IOU] = OTH
    kinds[best[:, 1] >= WEAK_IOU] = SIM
    kinds[best[:, 0] >= WEAK_IOU] = LOC
    kinds[data.matches.tp] = COR
    order = data.class_rank_order(keep)
    found = data.first_weak_detections(order)
    return RankedErrors(
        tuple(class_names), data.det_labels[order], data.matches.scores[order], data.matches.images[order],
        kinds[order], found, data.matches.num_positives[1:].clone(),
    )  # fmt: skip  # the fields in declaration order


def sensitivity(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    class_names: Sequence[str],
    pixel_indices: bool = False,
) -> Sensitivity:
    """Normalised AP per class and per size and aspect-ratio bucket (module docstring), for Fig. 4."""
    data = _Dataset.gather(detections, ground_truths, class_names, pixel_indices)
    return _sensitivity(data, class_names, len(ground_truths), pixel_indices)


def paper_figures(
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    class_names: Sequence[str],
    supercategories: Sequence[str] | None = None,
    pixel_indices: bool = False,
) -> tuple[RankedErrors, Sensitivity]:
    """:func:`ranked_errors` and :func:`sensitivity` (Fig. 3 and 4) from one matching of the detections."""
    data = _Dataset.gather(detections, ground_truths, class_names, pixel_indices)
    return (
        _ranked_errors(data, class_names, supercategories),
        _sensitivity(data, class_names, len(ground_truths), pixel_indices),
    )


def _sensitivity(data: _Dataset, class_names: Sequence[str], num_images: int, pixel_indices: bool) -> Sensitivity:
    """:func:`sensitivity` on gathered data of ``num_images`` images."""
    num_classes = len(class_names)
    size = (data.gt_boxes[:, 2:] - data.gt_boxes[:, :2] + (1.0 if pixel_indices else 0.0)).clamp(min=0)
    counted = ~data.gt_difficult
    size_cuts, size_bucket = _percentile_buckets(size[:, 0] * size[:, 1], data.gt_labels, counted, num_classes)
    aspect_cuts, aspect_bucket = _percentile_buckets(size[:, 0] / size[:, 1], data.gt_labels, counted, num_classes)
    # objects per class and bucket, (C, 10): size buckets then aspect buckets
    slot = (data.gt_labels[counted] - 1) * 10
    objects = torch.bincount(
        torch.cat((slot + size_bucket[counted], slot + 5 + aspect_bucket[counted])), minlength=10 * num_classes
    ).view(num_classes, 10)
    positives = torch.cat((data.matches.num_positives[1:, None], objects), dim=1)  # (C, 11)
    order = data.class_rank_order(~data.matches.ignored)
    tp = data.matches.tp[order]
    found = data.matched_objects()[order]  # the object of each true positive, -1 elsewhere
    buckets = torch.stack((size_bucket, aspect_bucket + 5), dim=1)
    of = torch.cat((buckets, buckets.new_full((1, 2), -1)))[found]  # (D, 2): -1 for false positives
    # a true positive of another bucket counts neither way: only false positives are misses
    hits = torch.cat((tp[None], of[:, 0] == torch.arange(5)[:, None], of[:, 1] == torch.arange(5, 10)[:, None]))
    normaliser = NORMALISED_FRACTION * num_images
    aps = _normalised_ap(hits, ~tp, data.det_labels[order], positives, normaliser)
    return Sensitivity(
        tuple(class_names), aps[:, 0], aps[:, 1:6], aps[:, 6:], objects[:, :5], objects[:, 5:], size_cuts,
        aspect_cuts, normaliser,
    )  # fmt: skip  # the fields in declaration order


def plot_ranked_errors(errors: RankedErrors, out_path: str | Path, groups: Mapping[str, Classes] | None = None) -> None:
    """Fig. 3: a column per group of classes (default: the paper's animals, vehicles and furniture for VOC's
    classes, else all classes together). Top: the share of each type among the top detections (stacked, log x),
    with the VOC recall (solid red) and the weak recall (dashed); bottom: the share of each false-positive type
    among the top false positives."""
    if groups is None:
        voc = set(errors.class_names) == VOC_CLASS_NAMES
        groups = dict(VOC_SUPERCATEGORIES) if voc else {"all classes": None}
    plt = pyplot()
    colours = ("#ffffff", "#4f81bd", "#c0504d", "#5ce660", "#8064a2")  # the toolkit's colormap
    fig, axes = plt.subplots(2, len(groups), figsize=(4.2 * len(groups), 7.5), squeeze=False)
    for k, (name, classes) in enumerate(groups.items()):
        labels = errors.class_labels(classes)
        n = round(float(errors.num_objects[[c - 1 for c in labels]].double().mean())) if labels else 0
        top, bottom = axes[0, k], axes[1, k]
        shares = errors.cumulative(classes).nan_to_num(0.0) * 100
        top.stackplot(DETECTION_MULTIPLES, shares.T.numpy(), labels=FP_TYPES, colors=colours, edgecolor="0.3")
        recall = errors.recall(classes) * 100
        top.plot(DETECTION_MULTIPLES, recall[:, 0].numpy(), "r-", linewidth=2.5)
        top.plot(DETECTION_MULTIPLES, recall[:, 1].numpy(), "r--", linewidth=2.5)
        top.set(xscale="log", xlim=(DETECTION_MULTIPLES[0], DETECTION_MULTIPLES[-1]), ylim=(0, 100), title=name,
                xlabel=f"total detections (x {n})", ylabel="percentage of each type")  # fmt: skip
        top.set_xticks(DETECTION_MULTIPLES, ["1/8", "1/4", "1/2", "1", "2", "4", "8"])
        top.minorticks_off()
        fp = errors.false_positives(classes) * 100
        for j, kind in enumerate(FP_TYPES[1:]):
            bottom.plot(FALSE_POSITIVE_COUNTS, fp[:, j].numpy(), color=colours[j + 1], linewidth=2.5, label=kind)
        bottom.set(xscale="log", ylim=(0, 100), xlabel="total false positives", ylabel="percentage of each type")
        bottom.set_xticks(FALSE_POSITIVE_COUNTS, [str(c) for c in FALSE_POSITIVE_COUNTS])
        bottom.minorticks_off()
        bottom.grid(alpha=0.3)
    axes[0, -1].legend(loc="lower right", fontsize=8)
    axes[1, -1].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def plot_sensitivity(sens: Sensitivity, out_path: str | Path, classes: Sequence[int | str] | None = None) -> None:
    """Fig. 4: normalised AP per size bucket (top) and aspect-ratio bucket (bottom), five points per class
    (``classes``: indices or names, default all) then their mean, each class's overall AP_N dashed."""
    chosen = [sens.class_names.index(c) if isinstance(c, str) else c for c in (classes or range(len(sens.ap_n)))]
    overall, mean_size, mean_aspect = sens.mean()
    rows = [(sens.class_names[c], sens.ap_n[c], sens.size_ap[c], sens.aspect_ap[c]) for c in chosen]
    rows.append(("mean", torch.tensor(overall), mean_size, mean_aspect))
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 1.3 * len(rows)), 7))
    panels = ((axes[0], "BBox Area", SIZE_BUCKETS, 2), (axes[1], "Aspect Ratio", ASPECT_BUCKETS, 3))
    for ax, title, buckets, col in panels:
        ticks, names = [], []
        for k, row in enumerate(rows):
            x = [6 * k + b for b in range(5)]
            values = row[col].nan_to_num(0.0).tolist()
            ax.plot(x, values, "b-+", linewidth=1)
            ax.plot([x[0], x[-1]], [float(row[1])] * 2, "k--", linewidth=1)
            for xi, v in zip(x, values, strict=True):
                ax.text(xi + 0.1, v, f"{v:.2f}", fontsize=6)
            ax.text(x[0], 1.02, row[0], fontsize=8)
            ticks += x
            names += buckets
        ax.set_xticks(ticks, names, fontsize=6)
        ax.set(ylim=(0, 1.1), xlim=(-1, 6 * len(rows) - 1), ylabel="normalised AP", title=title)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Dataset:
    """Detections and ground truths of all images concatenated (dataset order), with their VOC verdicts."""

    matches: Matches
    det_boxes: Tensor  # (D, 4) float64
    det_labels: Tensor  # (D,)
    gt_boxes: Tensor  # (G, 4) float64
    gt_labels: Tensor  # (G,)
    gt_difficult: Tensor  # (G,) bool
    pair_det: Tensor  # (P,) every (detection, object of its image) pair
    pair_gt: Tensor  # (P,)
    pair_iou: Tensor  # (P,) float64

    @staticmethod
    def gather(
        detections: Sequence[Detection], ground_truths: Sequence[Target], class_names: Sequence[str], pixel: bool
    ) -> _Dataset:
        num_classes = len(class_names)
        matches = match_detections(detections, ground_truths, num_classes, pixel_indices=pixel)
        det_labels = matches.labels
        if det_labels.numel() and (det_labels.min() < 1 or det_labels.max() > num_classes):
            raise ValueError(f"detection labels must be in 1..{num_classes}")
        det_boxes = _cat([d["boxes"] for d in detections], (0, 4)).double()
        gt_boxes = _cat([t["boxes"] for t in ground_truths], (0, 4)).double()
        gt_labels = _cat([t["labels"] for t in ground_truths], (0,)).long()
        flags = [t.get("difficult", torch.zeros(t["labels"].shape, dtype=torch.bool)) for t in ground_truths]
        gt_difficult = _cat(flags, (0,)).bool()
        # every detection against every object of its image: the pairs, without a loop over images
        gt_counts = torch.tensor([t["labels"].numel() for t in ground_truths], dtype=torch.long)
        gt_starts = torch.cumsum(gt_counts, 0) - gt_counts
        per_det = gt_counts[matches.images]
        pair_det = torch.repeat_interleave(torch.arange(det_labels.numel()), per_det)
        first_pair = torch.cumsum(per_det, 0) - per_det
        pair_gt = gt_starts[matches.images][pair_det] + torch.arange(pair_det.numel()) - first_pair[pair_det]
        pair_iou = _paired_iou(det_boxes[pair_det], gt_boxes[pair_gt], pixel)
        return _Dataset(matches, det_boxes, det_labels, gt_boxes, gt_labels, gt_difficult, pair_det, pair_gt, pair_iou)

    def best_overlaps(self, similar: Tensor) -> Tensor:
        """(D, 3) float64: each detection's highest IoU with an object of its class, of a similar class, of another
        class (-1: none in its image)."""
        d, g = self.det_labels[self.pair_det], self.gt_labels[self.pair_gt]
        group = torch.where(d == g, 0, torch.where(similar[d, g], 1, 2))
        out = torch.full((self.det_labels.numel() * 3,), -1.0, dtype=torch.float64)
        out.scatter_reduce_(0, self.pair_det * 3 + group, self.pair_iou, reduce="amax")
        return out.view(-1, 3)

    def matched_objects(self) -> Tensor:
        """(D,) the object each true positive found (its most-overlapping object of its class, the first of equals,
        as :func:`singleshot.metrics.voc.match_detections` picks it); -1 for the other detections."""
        same = self.det_labels[self.pair_det] == self.gt_labels[self.pair_gt]
        best = torch.full((self.det_labels.numel(),), -1.0, dtype=torch.float64)
        best.scatter_reduce_(0, self.pair_det[same], self.pair_iou[same], reduce="amax")
        at_best = same & (self.pair_iou == best[self.pair_det])
        out = torch.full((self.det_labels.numel(),), self.gt_labels.numel(), dtype=torch.long)
        out.scatter_reduce_(0, self.pair_det[at_best], self.pair_gt[at_best], reduce="amin")
        return torch.where(self.matches.tp, out, -1)

    def class_rank_order(self, keep: Tensor) -> Tensor:
        """Indices of the ``keep`` detections sorted by label, then by decreasing score (ties: dataset order)."""
        index = torch.nonzero(keep).flatten()
        index = index[torch.argsort(self.matches.scores[index], descending=True, stable=True)]
        return index[torch.argsort(self.det_labels[index], stable=True)]

    def first_weak_detections(self, order: Tensor) -> Tensor:
        """(len(order),) for each detection in ``order``: the non-difficult objects of its class whose first
        overlap (IoU >= 0.1) in that order it is."""
        position = torch.full((self.det_labels.numel(),), order.numel(), dtype=torch.long)
        position[order] = torch.arange(order.numel())
        hit = (self.det_labels[self.pair_det] == self.gt_labels[self.pair_gt]) & (self.pair_iou >= WEAK_IOU)
        hit &= ~self.gt_difficult[self.pair_gt] & (position[self.pair_det] < order.numel())
        first = torch.full((self.gt_labels.numel(),), order.numel(), dtype=torch.long)
        first.scatter_reduce_(0, self.pair_gt[hit], position[self.pair_det[hit]], reduce="amin")
        return torch.bincount(first[first < order.numel()], minlength=order.numel())


def _cat(tensors: list[Tensor], empty: tuple[int, ...]) -> Tensor:
    """The tensors concatenated on the CPU (an empty one of shape ``empty`` if none)."""
    return torch.cat([t.detach().cpu().reshape(-1, *empty[1:]) for t in tensors]) if tensors else torch.zeros(empty)


def _paired_iou(a: Tensor, b: Tensor, pixel: bool) -> Tensor:
    """IoU of each row of ``a`` (P, 4) with the same row of ``b``, the arithmetic of torchvision's ``box_iou`` (or of
    :func:`singleshot.boxes.box_iou_pixel_indices`), so that equal overlaps compare equal to the VOC matching's."""
    one = 1.0 if pixel else 0.0
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2]) + one).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    if pixel:
        area_a = (a[:, 2:] - a[:, :2] + 1).clamp(min=0).prod(dim=-1)
        area_b = (b[:, 2:] - b[:, :2] + 1).clamp(min=0).prod(dim=-1)
    else:
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter)


def _similarity(class_names: Sequence[str], supercategories: Sequence[str] | None) -> Tensor:
    """(C + 1, C + 1) bool indexed by label: two different classes are similar (row and column 0 unused)."""
    n = len(class_names)
    out = torch.zeros(n + 1, n + 1, dtype=torch.bool)
    if supercategories is not None:
        if len(supercategories) != n:
            raise ValueError(f"{len(supercategories)} supercategories for {n} classes")
        groups = [[k for k in range(n) if supercategories[k] == s] for s in set(supercategories)]
    elif set(class_names) == VOC_CLASS_NAMES:
        groups = [[list(class_names).index(name) for name in group] for group in VOC_SIMILAR_GROUPS]
    else:
        groups = []
    for group in groups:
        index = torch.tensor(group, dtype=torch.long) + 1
        out[index[:, None], index[None, :]] = True
    out.fill_diagonal_(False)
    return out


def _percentile_buckets(values: Tensor, labels: Tensor, counted: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Hoiem's cut points (``analyzeTrueDetections.m``) of the ``counted`` objects' ``values`` (G,) for each class of
    ``labels`` (G,) 1..C: (C, 4) the class's sorted values at the 1-based positions ``round(f · n)`` (MATLAB's
    rounding, at least the first; ``nan``: no objects), and (G,) each counted object's bucket 0..4, the number of
    its class's cut points below it (-1 for the others)."""
    index = torch.nonzero(counted).flatten()
    value, label = values[index].double(), labels[index]
    order = torch.argsort(value, stable=True)
    order = order[torch.argsort(label[order], stable=True)]
    n = torch.bincount(label, minlength=num_classes + 1)[1:].double()  # (C,)
    start = torch.cumsum(n, 0) - n
    fractions = torch.tensor(BUCKET_CUTS, dtype=torch.float64)
    position = torch.minimum(torch.floor(fractions * n[:, None] + 0.5).clamp(min=1), n[:, None]) - 1
    at = (start[:, None] + position).long().clamp(0, max(value.numel() - 1, 0))
    cuts = value[order][at] if value.numel() else torch.zeros(num_classes, 4, dtype=torch.float64)
    cuts = torch.where(n[:, None] > 0, cuts, math.nan)
    bucket = torch.full(labels.shape, -1, dtype=torch.long)
    bucket[index] = (value[:, None] > cuts[label - 1]).sum(dim=1)
    return cuts, bucket


def _cumulative_counts(values: Tensor, num_kinds: int | None) -> Tensor:
    """Running totals over a list, with a row of zeros first: ``(L + 1, K)`` for ``values`` (L,) kinds 0..K-1
    (counted one-hot) or (L, K) counts."""
    counts = torch.nn.functional.one_hot(values, num_kinds) if num_kinds is not None else values
    return torch.cat((counts.new_zeros(1, counts.shape[1]), counts.cumsum(0))).double()


def _shares(counts: Tensor) -> Tensor:
    """Each row of counts divided by its total (``nan`` for an empty row)."""
    return counts / counts.sum(dim=1, keepdim=True)


def _normalised_ap(hits: Tensor, misses: Tensor, labels: Tensor, positives: Tensor, normaliser: float) -> Tensor:
    """Hoiem's AP_N (``averagePrecisionNormalized.m``) of ``B`` lists per class at once: ``hits`` (B, L) and
    ``misses`` (L,) bool, true and false positives in rank order (neither: not counted), sorted by ``labels`` (L,)
    1..C; ``positives`` (C, B) objects. (C, B) float64, ``nan`` where a list has no objects."""
    num_classes = positives.shape[0]
    start = torch.searchsorted(labels, labels, right=False)  # the first position of each one's class

    def running(x: Tensor) -> Tensor:  # cumulative sums restarting at each class
        total = torch.cumsum(x.long(), dim=-1)
        return total - torch.cat((total.new_zeros(*total.shape[:-1], 1), total), dim=-1)[..., start]

    n = positives.double().T[:, labels - 1].clamp(min=1)  # (B, L)
    tp = running(hits).double() * normaliser / n
    fp = running(misses).double()
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp(min=1e-300), 0.0)
    # the envelope (best precision at this rank or below) of every class at once: an offset decreasing with the
    # class keeps each running maximum within its class (precision lies in [0, 1])
    offset = 2.0 * (num_classes - labels).double()
    envelope = torch.flip(torch.cummax(torch.flip(precision + offset, [1]), dim=1).values, [1]) - offset
    area = torch.zeros(hits.shape[0], num_classes + 1, dtype=torch.float64)
    area.index_add_(1, labels, envelope * hits)
    ap = area[:, 1:].T / positives.double().clamp(min=1)
    return torch.where(positives > 0, ap, math.nan)
