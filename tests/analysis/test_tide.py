"""TIDE figures against the reference implementation (``tidecv``) on data with every error type, and by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from singleshot.analysis.tide import MAIN_ERRORS, SIZES, tide_errors
from singleshot.data import open_split
from singleshot.types import Detection, Target

tidecv = pytest.importorskip("tidecv", reason="tidecv (a development dependency) is the reference")


def _box(rng: np.random.Generator, side: float, w: float, h: float) -> list[float]:
    x, y = rng.integers(0, int(side - w)), rng.integers(0, int(side - h))
    return [float(x), float(y), float(x + w), float(y + h)]


def _shift(box: list[float], dx: float, dy: float) -> list[float]:
    return [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy]


#: Detections made of an object: (shift in x and y as a share of its width and height, same class), per kind.
_MOVES: dict[str, list[tuple[float, float, bool]]] = {
    "tp": [(0.05, 0.0, True)],
    "dupe": [(0.0, 0.0, True), (0.0, 0.1, True)],
    "loc": [(0.6, 0.2, True)],
    "cls": [(0.01, 0.01, False)],
    "both": [(0.6, 0.2, False)],
    "miss": [],
}


def every_error_kind(seed: int = 0, images: int = 80, classes: int = 4) -> tuple[list[Detection], list[Target]]:
    """Seeded images whose detections hold every TIDE error type: integer boxes (exact in xywh and xyxy),
    scores on a 0.05 grid (ties), difficult objects, images without objects and without detections."""
    rng = np.random.default_rng(seed)
    detections, targets = [], []
    for i in range(images):
        gt_boxes, gt_labels, difficult, boxes, scores, labels = [], [], [], [], [], []
        for _ in range(0 if i % 13 == 5 else int(rng.integers(1, 7))):
            w, h = (float(v) for v in rng.integers(6, 160, size=2))
            box = _box(rng, 600, w, h)
            label = int(rng.integers(1, classes + 1))
            gt_boxes.append(box)
            gt_labels.append(label)
            difficult.append(bool(rng.random() < 0.1))
            other = label % classes + 1
            for kind in rng.choice(list(_MOVES), size=int(rng.integers(1, 3))):
                for dx, dy, same in _MOVES[kind]:
                    boxes.append(_shift(box, round(w * dx), round(h * dy)))
                    labels.append(label if same else other)
        for _ in range(int(rng.integers(0, 3))):  # background
            w, h = (float(v) for v in rng.integers(6, 120, size=2))
            boxes.append(_box(rng, 600, w, h))
            labels.append(int(rng.integers(1, classes + 1)))
        if i % 11 == 3:
            boxes, labels = [], []
        scores = [round(float(rng.integers(1, 20)) * 0.05, 2) for _ in boxes]
        detections.append(
            {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "scores": torch.tensor(scores),
             "labels": torch.tensor(labels, dtype=torch.long)}
        )  # fmt: skip  # one key per kind
        targets.append(
            {"boxes": torch.tensor(gt_boxes, dtype=torch.float64).reshape(-1, 4),
             "labels": torch.tensor(gt_labels, dtype=torch.long),
             "difficult": torch.tensor(difficult, dtype=torch.bool)}
        )  # fmt: skip  # one key per kind
    return detections, targets


def _xywh(box: list[float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def reference_run(detections: list[Detection], targets: list[Target]):
    """tidecv's TIDE and its run on the same data (difficult objects as ignore regions of their class)."""
    gt, preds = tidecv.Data("gt"), tidecv.Data("preds")
    for i, (det, target) in enumerate(zip(detections, targets, strict=True)):
        gt.add_image(i, f"image {i}")
        for box, label, hard in zip(
            target["boxes"].tolist(), target["labels"].tolist(), target["difficult"].tolist(), strict=True
        ):
            (gt.add_ignore_region if hard else gt.add_ground_truth)(i, label, box=_xywh(box))
        rows = zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True)
        for box, score, label in rows:
            preds.add_detection(i, label, score, box=_xywh(box))
    tide = tidecv.TIDE()
    run = tide.evaluate(gt, preds, mode=tidecv.TIDE.BOX)
    return tide, run


def _short(error_type: type) -> str:
    return error_type.short_name


def test_every_error_type_equals_tidecv() -> None:
    detections, targets = every_error_kind()
    ours = tide_errors(detections, targets, ["a", "b", "c", "d"])
    tide, run = reference_run(detections, targets)
    errors = tide.get_all_errors()
    assert ours.ap == pytest.approx(run.ap, abs=1e-6)
    for name, value in errors["main"]["preds"].items():
        assert ours.main[name] == pytest.approx(value, abs=1e-6), name
    for name, value in errors["special"]["preds"].items():
        assert ours.special[name] == pytest.approx(value, abs=1e-6), name
    reference_counts = {_short(t): len(v) for t, v in run.error_dict.items()}
    assert ours.counts == reference_counts
    assert all(ours.counts[name] > 0 for name in MAIN_ERRORS), ours.counts  # every type is present
    assert all(ours.main[name] > 0 for name in ("Cls", "Loc", "Bkg", "Miss")), ours.main


def test_per_class_and_per_size_equal_tidecv() -> None:
    detections, targets = every_error_kind(seed=1)
    ours = tide_errors(detections, targets, ["a", "b", "c", "d"])
    _, run = reference_run(detections, targets)
    base = {c: obj.get_ap() for c, obj in run.ap_data.objs.items()}
    for c, name in enumerate("abcd", start=1):
        assert ours.per_class[name]["AP"] == pytest.approx(base[c], abs=1e-6)
    for error_type in tidecv.TIDE._error_types:
        fixed = run.fix_errors(lambda e, t=error_type: isinstance(e, t))
        for c, name in enumerate("abcd", start=1):
            expected = max(fixed.objs[c].get_ap() - base[c], 0.0)
            assert ours.per_class[name][_short(error_type)] == pytest.approx(expected, abs=1e-6)
    for qualifier, (size, _, _) in zip(tidecv.AREA, SIZES, strict=True):
        reference = run.fix_main_errors(qual=qualifier)
        for error_type, value in reference.items():
            assert ours.by_size[size][_short(error_type)] == pytest.approx(value, abs=1e-6), (size, error_type)


def test_max_dets_and_ties_follow_tidecv() -> None:
    """More than 100 detections in an image (the lowest are dropped) and equal scores (order as given)."""
    rng = np.random.default_rng(7)
    boxes = torch.tensor([_box(rng, 300, 30, 30) for _ in range(130)], dtype=torch.float64)
    scores = torch.tensor([round(float(s), 1) for s in rng.random(130)])
    labels = torch.tensor(rng.integers(1, 3, size=130), dtype=torch.long)
    targets = [{"boxes": boxes[:40] + 1, "labels": labels[:40].clone(), "difficult": torch.zeros(40, dtype=torch.bool)}]
    detections = [{"boxes": boxes, "scores": scores, "labels": labels}]
    ours = tide_errors(detections, targets, ["a", "b"])
    tide, run = reference_run(detections, targets)
    assert ours.ap == pytest.approx(run.ap, abs=1e-6)
    assert ours.main == pytest.approx(tide.get_main_errors()["preds"], abs=1e-6)
    true_positives = sum(p[1] for obj in run.ap_data.objs.values() for p in obj.data_points.values())
    assert sum(ours.counts.values()) - ours.counts["Miss"] + true_positives == 100  # 30 of 130 left out


def _one(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detection:
    return {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels, dtype=torch.long)}  # fmt: skip  # one detection set per line


def test_hand_computed_case_per_error_type() -> None:
    """One object of class 1 at [0, 0, 100, 100] and one of class 2 at [300, 300, 400, 400]; each case adds to a
    true positive of the class-1 object (score 0.9) one detection that is exactly one error type."""
    target = {"boxes": torch.tensor([[0.0, 0, 100, 100], [300.0, 300, 400, 400]]), "labels": torch.tensor([1, 2])}
    tp = [0.0, 0, 100, 100]
    cases = {
        "Loc": ([350.0, 300, 450, 400], 2),  # IoU 1/3 with the class-2 object, right class
        "Cls": ([300.0, 300, 400, 400], 1),  # the class-2 object, called class 1
        "Dupe": ([0.0, 0, 100, 90], 1),  # the class-1 object again
        "Bkg": ([600.0, 600, 650, 650], 1),  # nothing near
        "Both": ([350.0, 300, 450, 400], 1),  # IoU 1/3 with the class-2 object, wrong class
    }
    for kind, (box, label) in cases.items():
        report = tide_errors([_one([tp, box], [0.9, 0.8], [1, label])], [target], ["one", "two"])
        assert [e.kind for e in report.errors if e.kind != "Miss"] == [kind], kind
        assert report.counts["Miss"] == (0 if kind in ("Loc", "Cls") else 1), kind  # Loc/Cls could take the object
    # The Loc case by hand: class 1 AP 100 (one object, one true positive first). Class 2: its only detection is a
    # Loc error: AP 0; fixing Loc makes it the true positive of its object: AP 100. Mean: 50 -> 100.
    report = tide_errors([_one([tp, cases["Loc"][0]], [0.9, 0.8], [1, 2])], [target], ["one", "two"])
    assert report.ap == pytest.approx(50.0)
    assert report.main["Loc"] == pytest.approx(50.0)
    assert report.per_class["two"]["Loc"] == pytest.approx(100.0) and report.per_class["one"]["Loc"] == 0
    # Perfect recall takes class 2's object out of the count; its false positive remains, and TIDE counts a class
    # with detections and no object as AP 0: no gain.
    assert report.special["FalseNeg"] == pytest.approx(0.0)
    # A miss: no detection of class 2 at all. Fixing it removes the object: class 2 leaves the mean.
    report = tide_errors([_one([tp], [0.9], [1])], [target], ["one", "two"])
    assert (report.ap, report.main["Miss"], report.counts["Miss"]) == (pytest.approx(50.0), pytest.approx(50.0), 1)
    # A background error above the true positive: precision 1/2 at recall 1 -> AP 50 for class 1; removing it: 100.
    report = tide_errors([_one([[600.0, 600, 650, 650], tp], [0.95, 0.9], [1, 1])], [target], ["one", "two"])
    assert report.per_class["one"]["AP"] == pytest.approx(50.0) and report.per_class["one"]["Bkg"] == pytest.approx(
        50.0
    )
    # A difficult object: a detection on it counts neither way, and it is no miss.
    hard = dict(target, difficult=torch.tensor([False, True]))
    report = tide_errors([_one([tp, [300.0, 300, 400, 400]], [0.9, 0.8], [1, 2])], [hard], ["one", "two"])
    assert report.ap == pytest.approx(100.0) and report.counts["Miss"] == 0
    assert not math.isnan(report.per_class["one"]["AP"]) and math.isnan(report.per_class["two"]["AP"])


def test_bccd_val_equals_tidecv(bccd: Path) -> None:
    """BCCD's val split (real boxes, a real mix of sizes and crowded cells) with seeded detections made from its
    objects by :data:`_MOVES` plus background boxes: every figure equals tidecv's."""
    dataset, _ = open_split(bccd, "val", ["Platelets", "RBC", "WBC"])
    rng = np.random.default_rng(3)
    detections, targets = [], []
    for _, _, target in dataset.items:
        boxes, labels = [], []
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            for kind in rng.choice(list(_MOVES), size=int(rng.integers(1, 3))):
                for dx, dy, same in _MOVES[kind]:
                    boxes.append(_shift(box, round(w * dx), round(h * dy)))
                    labels.append(label if same else label % 3 + 1)
        for _ in range(int(rng.integers(0, 5))):
            boxes.append(_box(rng, 480, float(rng.integers(10, 100)), float(rng.integers(10, 100))))
            labels.append(int(rng.integers(1, 4)))
        scores = rng.random(len(boxes)).round(3).tolist()
        detections.append(_one(boxes, scores, labels))
        targets.append(target)
    ours = tide_errors(detections, targets, ["Platelets", "RBC", "WBC"])
    tide, run = reference_run(detections, targets)
    errors = tide.get_all_errors()
    assert ours.ap == pytest.approx(run.ap, abs=1e-6)
    assert ours.main == pytest.approx(errors["main"]["preds"], abs=1e-6)
    assert ours.special == pytest.approx(errors["special"]["preds"], abs=1e-6)
    assert ours.counts == {_short(t): len(v) for t, v in run.error_dict.items()}
