"""Evaluation: VOC rules on cases small enough to check by hand, a cross-check against an independent
per-detection VOC implementation written here, and COCO metrics against pycocotools run from files."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from singleshot.metrics import (
    MetricReport,
    ap_from_pr,
    coco_results,
    confusion_matrix,
    evaluate_detections,
    match_detections,
    pr_curve,
    voc_ap,
)


def det(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def gt(boxes, labels, difficult=None):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult or [False] * len(labels), dtype=torch.bool),
    }


# Four objects of class 1, one per image; five detections ranked TP, FP, TP, FP, TP:
# recall .25 .25 .5 .5 .75, precision 1 .5 2/3 .5 .6
#   all-point: .25 * 1 + .25 * 2/3 + .25 * .6 = 0.566666...
#   11-point:  t = 0, .1, .2 -> 1; .3, .4, .5 -> 2/3; .6, .7 -> .6; .8, .9, 1 -> 0  => 6.2 / 11
SQUARE = [0, 0, 10, 10]
MISS = [50, 50, 60, 60]
CURVE_GTS = [gt([SQUARE], [1]) for _ in range(4)]
CURVE_DETS = [
    det([SQUARE, MISS], [0.9, 0.8], [1, 1]),  # TP, FP
    det([SQUARE, MISS], [0.7, 0.6], [1, 1]),  # TP, FP
    det([SQUARE], [0.5], [1]),  # TP
    det([], [], []),
]


def test_11_point_and_all_point_on_the_same_curve() -> None:
    assert voc_ap(CURVE_DETS, CURVE_GTS, 1, use_07_metric=False)[0] == pytest.approx(0.25 + 0.25 * 2 / 3 + 0.25 * 0.6)
    assert voc_ap(CURVE_DETS, CURVE_GTS, 1, use_07_metric=True)[0] == pytest.approx(6.2 / 11)
    recall = torch.tensor([0.25, 0.25, 0.5, 0.5, 0.75], dtype=torch.float64)
    precision = torch.tensor([1, 0.5, 2 / 3, 0.5, 0.6], dtype=torch.float64)
    assert ap_from_pr(recall, precision, use_07_metric=False) == pytest.approx(0.566666666666)


def test_difficult_match_counts_neither_way_and_is_not_a_positive() -> None:
    image = gt([SQUARE, [20, 20, 30, 30]], [1, 1], difficult=[False, True])
    d = det([[20, 20, 30, 30], SQUARE], [0.9, 0.8], [1, 1])  # the higher score is on the difficult object
    m = match_detections([d], [image], 1)
    assert m.ignored.tolist() == [True, False]
    assert m.tp.tolist() == [False, True]
    assert m.num_positives.tolist() == [0, 1]
    assert voc_ap([d], [image], 1, use_07_metric=False) == [1.0]  # a false positive would have made it 0.5
    # without the difficult flag the same detections give precision 1/2 at recall 1 (2 objects, both found)
    plain = gt([SQUARE, [20, 20, 30, 30]], [1, 1])
    assert voc_ap([d], [plain], 1, use_07_metric=False) == [1.0]
    assert match_detections([d], [plain], 1).num_positives.tolist() == [0, 2]


def test_second_detection_of_an_object_is_a_false_positive() -> None:
    image = gt([SQUARE, [20, 0, 30, 10]], [1, 1])
    d = det([SQUARE, [0, 0, 10, 9], [20, 0, 30, 10]], [0.9, 0.8, 0.7], [1, 1, 1])
    assert match_detections([d], [image], 1).tp.tolist() == [True, False, True]
    # recall .5 .5 1, precision 1 .5 2/3 -> .5 * 1 + .5 * 2/3
    assert voc_ap([d], [image], 1, use_07_metric=False)[0] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_detection_goes_to_its_highest_iou_object_even_when_taken() -> None:
    image = gt([[0, 0, 10, 10], [8, 0, 18, 10]], [1, 1])
    # the second detection overlaps object 0 most (IoU 0.67 vs 0.54): object 0 is taken, so it is a false
    # positive although it also overlaps the free object 1 by more than 0.5
    d = det([[0, 0, 10, 10], [2, 0, 12, 10]], [0.9, 0.8], [1, 1])
    assert match_detections([d], [image], 1).tp.tolist() == [True, False]


def test_iou_must_exceed_the_threshold_and_pixel_index_convention() -> None:
    image = gt([[0, 0, 10, 10]], [1])
    half = det([[0, 0, 10, 5]], [0.9], [1])  # IoU exactly 0.5: not a match
    assert match_detections([half], [image], 1).tp.tolist() == [False]
    # as inclusive pixel indices (VOC devkit), [0, 0, 2, 2] is 3x3 pixels and [1, 0, 2, 2] is 2x3: IoU 6/9,
    # while as continuous coordinates their IoU is 2/4 = 0.5
    small = gt([[0, 0, 2, 2]], [1])
    d = det([[1, 0, 2, 2]], [0.9], [1])
    assert match_detections([d], [small], 1).tp.tolist() == [False]
    assert match_detections([d], [small], 1, pixel_indices=True).tp.tolist() == [True]


def test_class_without_detections_and_class_without_objects() -> None:
    images = [gt([SQUARE], [1]), gt([[20, 20, 40, 40]], [2])]
    dets = [det([SQUARE], [0.9], [1]), det([[20, 20, 40, 40], [0, 30, 9, 40]], [0.8, 0.7], [3, 3])]
    report = evaluate_detections(dets, images, ["a", "b", "c"], coco=False)
    assert report.ap50 == [1.0, 0.0, report.ap50[2]] and math.isnan(report.ap50[2])  # class c: no objects
    assert report.num_positives == [1, 1, 0] and report.num_detections == [1, 0, 2]
    assert report.map50 == pytest.approx(0.5)  # mean over a and b only
    assert report.map50_07 == pytest.approx(0.5)


def test_pr_curve_envelope_at_101_points() -> None:
    m = match_detections(CURVE_DETS, CURVE_GTS, 1)
    curve = pr_curve(m, 1)
    precision, score = curve.envelope(5)  # recall 0, .25, .5, .75, 1
    assert precision == pytest.approx([1.0, 1.0, 2 / 3, 0.6, 0.0])
    assert score == pytest.approx([0.9, 0.9, 0.7, 0.5, 0.0])


def test_confusion_matrix_by_hand() -> None:
    images = [gt([SQUARE, [20, 20, 30, 30], [40, 40, 50, 50]], [1, 2, 2], difficult=[False, False, True])]
    dets = [
        det(
            [SQUARE, [20, 20, 30, 30], [60, 60, 70, 70], [40, 40, 50, 50], [0, 0, 10, 9]],
            [0.9, 0.8, 0.7, 0.6, 0.1],
            [1, 1, 2, 2, 1],
        )
    ]
    m = confusion_matrix(dets, images, 2, conf=0.25, iou=0.5)
    # object 1 (class 1) found as 1; object 2 (class 2) found as 1; a class-2 detection on background;
    # the detection of the difficult object is left out; the 0.1 detection is below conf
    expected = torch.zeros(3, 3, dtype=torch.long)
    expected[1, 1] = 1
    expected[2, 1] = 1
    expected[0, 2] = 1
    assert torch.equal(m, expected)


def test_report_table_and_json_round_trip(tmp_path: Path) -> None:
    report = evaluate_detections(CURVE_DETS, CURVE_GTS, ["square"], coco=True)
    assert isinstance(report, MetricReport)
    path = tmp_path / "metrics.json"
    report.save_json(path)
    data = json.loads(path.read_text())
    assert data["summary"]["mAP50"] == pytest.approx(report.map50)
    assert data["summary"]["mAP50_voc07"] == pytest.approx(6.2 / 11)
    assert data["classes"][0]["objects"] == 4 and len(data["classes"][0]["pr_curve"]["precision"]) == 101
    assert data["coco"]["AP50"] == pytest.approx(report.coco["AP50"])
    table = str(report)
    assert "square" in table and f"{6.2 / 11:.4f}" in table and "AP75" in table


# -- cross-checks on random data -------------------------------------------------------------------------
def random_dataset(seed: int, images: int = 300, classes: int = 4):
    """Seeded ground truth (some difficult) and detections: jittered copies of objects (some with a wrong
    class, some duplicated) and random false alarms, with random scores."""
    rng = random.Random(seed)
    gts, dets = [], []
    for _ in range(images):
        boxes, labels, difficult = [], [], []
        for _ in range(rng.randint(0, 6)):
            x, y = rng.uniform(0, 400), rng.uniform(0, 300)
            w, h = rng.uniform(8, 150), rng.uniform(8, 150)
            boxes.append([x, y, x + w, y + h])
            labels.append(rng.randint(1, classes))
            difficult.append(rng.random() < 0.1)
        d_boxes, d_scores, d_labels = [], [], []
        for box, label in zip(boxes, labels, strict=True):
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                w, h = box[2] - box[0], box[3] - box[1]
                jitter = [rng.gauss(0, 0.15) * s for s in (w, h, w, h)]
                d_boxes.append([b + j for b, j in zip(box, jitter, strict=True)])
                d_scores.append(rng.random())
                d_labels.append(label if rng.random() < 0.85 else rng.randint(1, classes))
        for _ in range(rng.randint(0, 4)):
            x, y = rng.uniform(0, 400), rng.uniform(0, 300)
            d_boxes.append([x, y, x + rng.uniform(5, 120), y + rng.uniform(5, 120)])
            d_scores.append(rng.random())
            d_labels.append(rng.randint(1, classes))
        gts.append(gt(boxes, labels, difficult))
        dets.append(det(d_boxes, d_scores, d_labels))
    return dets, gts


def reference_voc_ap(dets, gts, label: int, threshold: float = 0.5) -> float:
    """The VOC devkit's procedure, one detection at a time, in plain Python floats (all-point AP)."""
    objects = {}
    npos = 0
    for i, g in enumerate(gts):
        rows = [
            (b, bool(d))
            for b, lab, d in zip(g["boxes"].tolist(), g["labels"].tolist(), g["difficult"].tolist(), strict=True)
            if lab == label
        ]
        objects[i] = {"boxes": [r[0] for r in rows], "difficult": [r[1] for r in rows], "seen": [False] * len(rows)}
        npos += sum(not r[1] for r in rows)
    found = [
        (s, i, b)
        for i, d in enumerate(dets)
        for b, s, lab in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist(), strict=True)
        if lab == label
    ]
    found.sort(key=lambda t: -t[0])
    tp, fp = [], []
    for _, i, b in found:
        best, arg = -1.0, -1
        for j, o in enumerate(objects[i]["boxes"]):
            iw = min(b[2], o[2]) - max(b[0], o[0])
            ih = min(b[3], o[3]) - max(b[1], o[1])
            inter = max(iw, 0.0) * max(ih, 0.0)
            union = (b[2] - b[0]) * (b[3] - b[1]) + (o[2] - o[0]) * (o[3] - o[1]) - inter
            if inter / union > best:
                best, arg = inter / union, j
        if best > threshold:
            if objects[i]["difficult"][arg]:
                tp.append(0)
                fp.append(0)
            elif not objects[i]["seen"][arg]:
                objects[i]["seen"][arg] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    ctp = cfp = 0
    rec, prec = [], []
    for t, f in zip(tp, fp, strict=True):
        ctp += t
        cfp += f
        rec.append(ctp / npos)
        prec.append(ctp / max(ctp + cfp, 2.220446049250313e-16))
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    return sum((mrec[k + 1] - mrec[k]) * mpre[k + 1] for k in range(len(mrec) - 1) if mrec[k + 1] != mrec[k])


@pytest.mark.parametrize("seed", [0, 1])
def test_all_point_ap_matches_independent_reference(seed: int) -> None:
    dets, gts = random_dataset(seed)
    ours = voc_ap(dets, gts, 4, use_07_metric=False)
    for label in range(1, 5):
        expected = reference_voc_ap(dets, gts, label)
        assert abs(ours[label - 1] - expected) < 1e-9, (label, ours[label - 1], expected)
    assert 0.2 < sum(ours) / 4 < 0.95  # the data is neither trivial nor hopeless


def test_coco_metrics_equal_pycocotools_run_from_files(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets, gts = random_dataset(3, images=200)
    names = ["a", "b", "c", "d"]
    # the same data written as COCO files by hand: bbox x, y, w, h; difficult objects as crowd regions
    images = [{"id": 1000 + i, "width": 600, "height": 500} for i in range(len(gts))]
    annotations = []
    for i, g in enumerate(gts):
        for b, lab, d in zip(g["boxes"].tolist(), g["labels"].tolist(), g["difficult"].tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": 1000 + i, "category_id": 10 * lab, "bbox": [b[0], b[1], w, h],
                 "area": w * h, "iscrowd": int(d)}
            )  # fmt: skip
    categories = [{"id": 10 * (k + 1), "name": n} for k, n in enumerate(names)]
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    results = [
        {"image_id": 1000 + i, "category_id": 10 * lab, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
        for i, d in enumerate(dets)
        for b, s, lab in zip(d["boxes"].double().tolist(), d["scores"].tolist(), d["labels"].tolist(), strict=True)
    ]
    dt_file = tmp_path / "dt.json"
    dt_file.write_text(json.dumps(results))
    coco_gt = COCO(str(gt_file))
    evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(dt_file)), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()

    image_ids = [1000 + i for i in range(len(gts))]
    category_ids = [10, 20, 30, 40]
    report = evaluate_detections(dets, gts, names, image_ids=image_ids, category_ids=category_ids)
    assert [report.coco[k] for k in report.coco] == evaluator.stats.tolist()
    assert report.coco["AP50"] > 0.2  # not a degenerate case
    assert coco_results(dets, image_ids, category_ids)[0]["category_id"] in category_ids


def test_coco_with_no_detections_is_zero_not_an_error() -> None:
    report = evaluate_detections([det([], [], [])], [gt([SQUARE], [1])], ["a"])
    assert report.coco["AP"] == 0.0 and report.map50 == 0.0
