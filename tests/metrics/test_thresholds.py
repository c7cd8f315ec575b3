"""Per-class score thresholds: best F1 and precision targets on curves small enough to check by hand, ties, classes
without a threshold, the F1 of given thresholds, and the printed table."""

from __future__ import annotations

import math
import random

import pytest
import torch

from singleshot.metrics import (
    ClassThreshold,
    MetricReport,
    class_thresholds,
    evaluate_detections,
    threshold_f1,
    threshold_vector,
    thresholds_table,
)


def _box(i: int) -> list[float]:
    """Box ``i`` of a row of disjoint 10-pixel squares."""
    return [20.0 * i, 0.0, 20.0 * i + 10, 10.0]


def _report(objects: dict[int, list[int]], detections: list[tuple[int, int, float]], names: list[str]) -> MetricReport:
    """One image: ``objects`` label -> box indices; ``detections`` (box index, label, score)."""
    gt_boxes = [_box(i) for label in objects for i in objects[label]]
    gt_labels = [label for label in objects for _ in objects[label]]
    det = {
        "boxes": torch.tensor([_box(i) for i, _, _ in detections], dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor([s for _, _, s in detections], dtype=torch.float32),
        "labels": torch.tensor([label for _, label, _ in detections], dtype=torch.int64),
    }
    target = {"boxes": torch.tensor(gt_boxes).reshape(-1, 4), "labels": torch.tensor(gt_labels, dtype=torch.int64)}
    return evaluate_detections([det], [target], names, coco=False)


NAMES = ["a", "b", "none", "missed", "wrong"]
#: a: 4 objects (boxes 0-3); ranked TP 0.9, TP 0.8, FP 0.7, TP 0.6, FP 0.4, FP 0.3: F1 after each rank
#: 2 TP / (k + 4) = 0.4, 0.667, 0.571, 0.75, 0.667, 0.6: best after rank 4, between 0.6 and 0.4.
#: b: 2 objects (boxes 10, 11); TP 0.95, FP 0.2: F1 0.667, 0.5. none: no object, one detection.
#: missed: one object, no detection. wrong: one object, one detection elsewhere (a false positive).
OBJECTS = {1: [0, 1, 2, 3], 2: [10, 11], 4: [20], 5: [30]}
DETECTIONS = [
    (0, 1, 0.9), (1, 1, 0.8), (5, 1, 0.7), (2, 1, 0.6), (6, 1, 0.4), (7, 1, 0.3),
    (10, 2, 0.95), (12, 2, 0.2), (40, 3, 0.5), (31, 5, 0.8),
]  # fmt: skip  # (box, label, score), one detection of class a or b per rank, grouped by class


@pytest.fixture
def report() -> MetricReport:
    return _report(OBJECTS, DETECTIONS, NAMES)


def test_best_f1_threshold_of_hand_made_curves(report: MetricReport) -> None:
    a, b, none, missed, wrong = class_thresholds(report)
    assert (a.name, a.objects, a.detections) == ("a", 4, 6)
    assert a.threshold == 0.5  # halfway between 0.6 (kept) and 0.4 (left out)
    assert (a.precision, a.recall, a.f1) == pytest.approx((0.75, 0.75, 0.75))
    assert b.threshold == 0.6  # halfway between 0.95 and 0.2 is 0.575: 0.6, the fewest decimals between the two
    assert (b.precision, b.recall, b.f1) == pytest.approx((1.0, 0.5, 2 / 3))
    for c in (none, missed, wrong):  # no objects / no detections / only false positives: no threshold
        assert c.threshold is None and math.isnan(c.f1) and c.target_threshold is None
    assert (none.objects, none.detections, missed.detections, wrong.detections) == (0, 1, 0, 1)
    assert threshold_vector([a, b, none, missed, wrong]) == (0.5, 0.6, None, None, None)


def test_precision_target_takes_the_lowest_threshold_reaching_it(report: MetricReport) -> None:
    # class a's precision after each rank: 1, 1, 2/3, 3/4, 3/5, 1/2
    for target, threshold, recall in ((0.9, 0.75, 0.5), (0.75, 0.5, 0.75), (0.5, 0.2, 0.75), (0.4, 0.2, 0.75)):
        a = class_thresholds(report, precision_target=target)[0]
        assert (a.precision_target, a.target_threshold, a.target_recall) == (target, threshold, recall), target
        assert a.target_precision >= target
        assert a.threshold == 0.5  # the best-F1 threshold is the same whatever the target
    found = class_thresholds(report, precision_target=1.0)
    assert threshold_vector(found, "target") == (0.75, 0.6, None, None, None)
    with pytest.raises(ValueError, match=r"precision_target=1\.5 must be in"):
        class_thresholds(report, precision_target=1.5)
    with pytest.raises(ValueError, match="which must be"):
        threshold_vector(found, "best")  # type: ignore[arg-type]  # the wrong value is what is tested


def test_a_threshold_never_splits_tied_scores() -> None:
    # one object; a true and a false positive tied at 0.7: keeping the first alone (F1 1) is no threshold
    report = _report({1: [0]}, [(0, 1, 0.7), (1, 1, 0.7), (2, 1, 0.1)], ["a"])
    (a,) = class_thresholds(report)
    assert a.threshold == 0.4 and a.f1 == pytest.approx(2 / 3)  # both tied kept: P 1/2, R 1


def test_threshold_f1_of_one_global_and_of_per_class_thresholds(report: MetricReport) -> None:
    at_global = threshold_f1(report, 0.25)  # a keeps all 6: F1 6/10; b its true positive: 2/3; wrong: its FP
    assert at_global[:2] == pytest.approx([0.6, 2 / 3]) and math.isnan(at_global[2]) and at_global[3:] == [0.0, 0.0]
    found = class_thresholds(report)
    per_class = threshold_f1(report, threshold_vector(found), fallback=0.25)
    assert per_class[:2] == pytest.approx([t.f1 for t in found[:2]])
    given = threshold_f1(report, [0.45, 0.99, None, None, 0.9])  # None: the fallback, 0 (keep every detection)
    assert given == pytest.approx([0.75, 0.0, math.nan, 0.0, 0.0], nan_ok=True)
    assert threshold_f1(report, 0.6)[0] == pytest.approx(4 / 7)  # scores must exceed it: 0.6 itself is left out
    with pytest.raises(ValueError, match="2 thresholds for 5 classes"):
        threshold_f1(report, [0.1, 0.2])


def test_thresholds_table(report: MetricReport) -> None:
    table = thresholds_table(report, class_thresholds(report, precision_target=0.9), baseline=0.25)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "objects", "dets", "threshold", "precision", "recall", "F1", "F1", "@0.25",
                                "P>=0.9", "at", "recall"]  # fmt: skip  # one list, two lines
    assert lines[1].split() == ["a", "4", "6", "0.500", "0.750", "0.750", "0.750", "0.600", "0.750", "0.500"]
    assert lines[3].split() == ["none", "0", "1", *["-"] * 7]
    # the mean over classes with objects: per-class thresholds (0.75, 2/3, 0, 0) against 0.25 for all (0.6, 2/3, 0, 0)
    means = [f"{(0.75 + 2 / 3) / 4:.3f}", f"{(0.6 + 2 / 3) / 4:.3f}"]
    assert lines[-1].split() == ["all", "8", "10", "-", "-", "-", *means]
    plain = thresholds_table(report, class_thresholds(report)).splitlines()
    assert "@" not in plain[0] and "P>=" not in plain[0]


def test_the_best_f1_threshold_beats_every_global_threshold() -> None:
    rng = random.Random(0)
    objects = {1: list(range(0, 30)), 2: list(range(30, 40))}
    detections = [(rng.randrange(60), rng.choice((1, 2)), round(rng.random(), 3)) for _ in range(80)]
    report = _report(objects, detections, ["a", "b"])
    found = class_thresholds(report, precision_target=0.6)
    assert all(isinstance(t, ClassThreshold) and t.threshold is not None for t in found)
    assert any(t.target_threshold is not None for t in found)  # the precision-target checks below check something
    ours = threshold_f1(report, threshold_vector(found))
    assert ours == pytest.approx([t.f1 for t in found])  # the thresholds keep what their F1 was computed on
    for k, t in enumerate(found):
        kept = report.curves[k].scores > t.threshold
        assert torch.equal(kept, report.curves[k].scores >= t.threshold)  # never on a score: > and >= agree
        for conf in [i / 100 for i in range(101)]:
            assert ours[k] >= threshold_f1(report, conf)[k] - 1e-12
        # no threshold of the grid reaching the precision target keeps more of the objects
        curve = report.curves[k]
        for conf in [i / 100 for i in range(101)]:
            kept = int((curve.scores.float() > conf).sum())
            if kept and float(curve.precision[kept - 1]) >= 0.6:
                assert t.target_threshold is not None and t.target_precision >= 0.6
                assert float(curve.recall[kept - 1]) <= t.target_recall
