"""COCO analyze curves: C75 / C50 / Loc equal to pycocotools' own precision arrays, Sim / Oth equal to pycocotools
run as the official analyze runs them (other-category objects ignored, not crowd), the stacking order, and a case
small enough to check by hand."""

from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from singleshot.analysis.coco_curves import AREAS, CURVES, RECALL_THRESHOLDS, coco_curves, plot_coco_curves
from singleshot.metrics.coco import coco_evaluate, coco_ground_truth, coco_results
from singleshot.types import Detection, Target

NAMES = ["cat", "dog", "car", "bus", "bird"]  # bird: detections but never an object
SUPERS = ["animal", "animal", "vehicle", "vehicle", "animal"]
SIDES = {"small": (6, 31), "medium": (33, 95), "large": (97, 180)}


def det(boxes: list, scores: list, labels: list) -> Detection:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def gt(boxes: list, labels: list, difficult: list | None = None) -> Target:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult or [False] * len(labels), dtype=torch.bool),
    }


def random_dataset(seed: int, images: int = 70) -> tuple[list[Detection], list[Target]]:
    """Integer boxes (exact IoU ties are common) in all three size ranges, scores on a 0.05 grid (score ties);
    per object: true positives, duplicates, mislocalised boxes, confusions with a class of the same and of another
    supercategory; background boxes; crowd objects; pairs of overlapping objects with a detection midway (equal
    IoU with both: which one it takes decides whether a later detection is a true positive); images without
    objects, without detections, and one with more than 100 detections of a class."""
    rng = np.random.default_rng(seed)
    dets, gts = [], []
    for i in range(images):
        boxes, labels, crowd, twins = [], [], [], []
        for _ in range(0 if rng.random() < 0.12 else int(rng.integers(1, 7))):
            lo, hi = SIDES[str(rng.choice(list(SIDES)))]
            w, h = (int(v) for v in rng.integers(lo, hi, 2))
            if rng.random() < 0.1:  # area exactly 32² (small and medium both) or 96² (medium and large)
                w = h = 96 if rng.random() < 0.5 else 32
            x, y = (int(v) for v in rng.integers(0, 400, 2))
            boxes.append([x, y, x + w, y + h])
            labels.append(int(rng.integers(1, 5)))
            crowd.append(bool(rng.random() < 0.1))
            if rng.random() < 0.2:  # a twin overlapping it (shifted by w / 4): see below
                w = 8 * (w // 8 + 1)
                boxes[-1] = [x, y, x + w, y + h]
                boxes.append([x + w // 4, y, x + w + w // 4, y + h])
                labels.append(labels[-1])
                crowd.append(False)
                twins.append(len(boxes) - 2)
        db, ds, dl = [], [], []
        for t in twins:  # X, midway, has IoU 7/9 with both twins and takes the later one; Y then takes the first
            (x1, y1, x2, y2), w = boxes[t], boxes[t][2] - boxes[t][0]  # (IoU .6; .33 with the second twin)
            db += [[x1 + w // 8, y1, x2 + w // 8, y2], [x1 - w // 4, y1, x2 - w // 4, y2]]
            dl += [labels[t], labels[t]]
        for t, ((x1, y1, x2, y2), label) in enumerate(zip(boxes, labels, strict=True)):
            w, h = x2 - x1, y2 - y1
            if t in twins or t - 1 in twins:
                continue
            for _ in range(int(rng.integers(0, 4))):  # true positives and duplicates
                j = rng.integers(-2, 3, 4)
                db.append([x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3]])
                dl.append(label)
            if rng.random() < 0.4:  # mislocalised
                s = float(rng.uniform(0.3, 0.8))
                db.append([x1 + s * w, y1, x2 + s * w, y2])
                dl.append(label)
            if rng.random() < 0.5:  # class confusion: same supercategory (1 <-> 2, 3 <-> 4, 1 -> 5) or another
                other = {1: [2, 5, 3], 2: [1, 5, 4], 3: [4, 1], 4: [3, 2]}[label]
                for wrong in rng.choice(other, size=int(rng.integers(1, 3))):
                    j = rng.integers(-3, 4, 4)
                    db.append([x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3]])
                    dl.append(int(wrong))
        for _ in range(int(rng.integers(0, 5))):  # background
            x, y = (int(v) for v in rng.integers(0, 450, 2))
            w, h = (int(v) for v in rng.integers(5, 150, 2))
            db.append([x, y, x + w, y + h])
            dl.append(int(rng.integers(1, 6)))
        if i == 3:  # more than 100 detections of one class in one image: only the best 100 count
            for _ in range(120):
                x, y = (int(v) for v in rng.integers(0, 300, 2))
                db.append([x, y, x + 40, y + 40])
                dl.append(1)
            boxes.append([10, 10, 50, 50])
            labels.append(1)
            crowd.append(False)
        if rng.random() < 0.1:
            db, dl = [], []  # no detections
        ds = (np.round(rng.uniform(0.05, 1.0, len(db)) * 20) / 20).tolist()
        for k in range(len(twins) if db else 0):
            ds[2 * k], ds[2 * k + 1] = 0.9, 0.5  # X before Y
        dets.append(det(db, ds, dl))
        gts.append(gt(boxes, labels, crowd))
    return dets, gts


def quiet_eval(ground_truth: dict, results: list[dict], iou: float, evaluator: type[COCOeval] = COCOeval) -> np.ndarray:
    """``pycocotools``' precision ``(R, K, A)`` at one IoU threshold, 100 detections."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        e = evaluator(coco_gt, coco_gt.loadRes(results), "bbox")
        e.params.iouThrs = np.array([iou])
        e.evaluate()
        e.accumulate()
    return e.eval["precision"][0, :, :, :, -1]


class OthersIgnored(COCOeval):
    """``COCOeval`` with the objects marked ``other`` ignored but not crowd regions (the Matlab API's ``ignore``
    flag, which ``pycocotools`` would overwrite with ``iscrowd``)."""

    def _prepare(self) -> None:
        super()._prepare()
        for objects in self._gts.values():
            for g in objects:
                if g.get("other"):
                    g["ignore"] = 1


def relabelled(ground_truth: dict, supercategories: list[str] | None) -> dict:
    """The ground truth seen by the official analyze's Sim (``supercategories``) or Oth (None) pass for every
    category at once: for category k, the objects of k plus, relabelled k and marked ``other``, those of the other
    categories (of k's supercategory for Sim), in each image's annotation order."""
    by_image: dict[int, list[dict]] = {}
    for a in ground_truth["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    annotations = []
    for k in range(1, len(ground_truth["categories"]) + 1):
        for objects in by_image.values():
            for a in objects:
                c = a["category_id"]
                if c != k and supercategories is not None and supercategories[c - 1] != supercategories[k - 1]:
                    continue
                annotations.append({**a, "id": len(annotations) + 1, "category_id": k, "other": c != k})
    return {**ground_truth, "annotations": annotations}


@pytest.fixture(scope="module")
def dataset() -> tuple[list[Detection], list[Target]]:
    return random_dataset(0)


@pytest.fixture(scope="module")
def curves(dataset: tuple[list[Detection], list[Target]]):
    return coco_curves(*dataset, NAMES, SUPERS)


def test_the_random_data_has_every_situation(dataset, curves) -> None:
    dets, gts = dataset
    n_objects = {a: curves.num_objects[a].sum() for a in AREAS}
    assert min(n_objects.values()) > 10 and curves.num_objects["all"][4] == 0  # all sizes; bird has none
    assert any(len(g["labels"]) == 0 for g in gts) and any(len(d["labels"]) == 0 for d in dets)
    assert any(g["difficult"].any() for g in gts)
    assert max(int((d["labels"] == 1).sum()) for d in dets) > 100
    # every later curve adds something somewhere: each kind of error occurs
    under = curves.area_under("all")
    assert under["C75"] < under["C50"] < under["Loc"] < under["Sim"] < under["Oth"] < under["BG"] < under["FN"]


def test_c75_and_c50_equal_pycocotools(dataset, curves) -> None:
    dets, gts = dataset
    evaluator = coco_evaluate(coco_ground_truth(gts, NAMES), coco_results(dets))
    thresholds = evaluator.params.iouThrs.tolist()
    precision = evaluator.eval["precision"]  # (T, R, K, A, M)
    assert evaluator.params.maxDets[2] == 100 and evaluator.params.areaRngLbl == list(AREAS)
    for curve, iou in (("C75", 0.75), ("C50", 0.5)):
        ref = precision[thresholds.index(iou), :, :, :, 2]
        for a, area in enumerate(AREAS):
            np.testing.assert_allclose(curves.per_class[area][curve], ref[:, :, a].T, rtol=0, atol=1e-12)
            valid = ref[:, :, a].T[ref[0, :, a] > -1]
            np.testing.assert_allclose(curves.precision[area][curve], valid.mean(axis=0), rtol=0, atol=1e-12)
    assert (precision[0, :, 4] == -1).all() and (curves.per_class["all"]["C50"][4] == -1).all()


def test_loc_equals_pycocotools_at_iou_one_tenth(dataset, curves) -> None:
    dets, gts = dataset
    ref = quiet_eval(coco_ground_truth(gts, NAMES), coco_results(dets), 0.1)
    for a, area in enumerate(AREAS):
        np.testing.assert_allclose(curves.per_class[area]["Loc"], ref[:, :, a].T, rtol=0, atol=1e-12)


def test_sim_and_oth_equal_pycocotools_run_as_the_official_analyze(dataset, curves) -> None:
    dets, gts = dataset
    ground_truth = coco_ground_truth(gts, NAMES)
    for curve, supers in (("Sim", SUPERS), ("Oth", None)):
        ref = quiet_eval(relabelled(ground_truth, supers), coco_results(dets), 0.1, OthersIgnored)
        for a, area in enumerate(AREAS):
            np.testing.assert_allclose(curves.per_class[area][curve], ref[:, :, a].T, rtol=0, atol=1e-12)


def test_each_curve_is_never_below_the_one_before(curves) -> None:
    # (C75 <= C50 <= Loc can fail under COCO's rules, see test_loc_can_be_below_c50_as_with_pycocotools; not here)
    assert curves.curves == CURVES
    for area in AREAS:
        for table in (curves.per_class[area], {c: v[None] for c, v in curves.precision[area].items()}):
            for lower, upper in itertools.pairwise(CURVES):
                assert (table[lower] <= table[upper]).all(), (area, lower, upper)
        assert (curves.precision[area]["FN"] == 1).all()


def test_without_supercategories_there_is_no_sim(dataset, curves) -> None:
    plain = coco_curves(*dataset, NAMES)
    assert plain.curves == ("C75", "C50", "Loc", "Oth", "BG", "FN")
    for area in AREAS:
        for curve in plain.curves:
            np.testing.assert_array_equal(plain.per_class[area][curve], curves.per_class[area][curve])


# By hand, 3 images, classes cat / dog (animals), car (vehicle), bird (animal, no object). Cat detections, ranked:
#   .95 exactly on the dog (a supercategory confusion), .93 on the dog again (IoU .8),
#   .90 on the car (IoU .8, a confusion with another supercategory), .80 on cat A (IoU .6), .70 on background.
# Cat objects: A (image 0) and A2 (image 2, never found): recall reaches .5 at the 4th detection.
#   C75: no true positive -> 0.  C50 = Loc: TP at rank 4 -> precision 1/4 up to recall .5.
#   Sim: the dog absorbs the .95 detection only (an ignored object is taken once, like any non-crowd object), the
#        .93 duplicate stays a false positive: FP FP TP FP -> 1/3.
#   Oth: the car absorbs the .90 one too: FP TP FP -> 1/2.   BG: 1 up to recall .5.   FN: 1.
A, B, C = [0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 50, 50]
HAND_DETS = [
    det([B, [20, 20, 40, 36], [0, 0, 10, 6]], [0.95, 0.93, 0.8], [1, 1, 1]),
    det([[0, 0, 50, 40], [60, 60, 70, 70]], [0.9, 0.7], [1, 1]),
    det([], [], []),
]
HAND_GTS = [gt([A, B], [1, 2]), gt([C], [3]), gt([[5, 5, 25, 25]], [1])]


def test_hand_checked_case() -> None:
    curves = coco_curves(HAND_DETS, HAND_GTS, ["cat", "dog", "car", "bird"], ["animal", "animal", "vehicle", "animal"])
    up_to_half = RECALL_THRESHOLDS <= 0.5
    assert up_to_half.sum() == 51
    expected = {"C75": 0, "C50": 1 / 4, "Loc": 1 / 4, "Sim": 1 / 3, "Oth": 1 / 2, "BG": 1}
    cat = {c: v[0] for c, v in curves.per_class["all"].items()}
    for curve, value in expected.items():
        np.testing.assert_allclose(cat[curve], np.where(up_to_half, value, 0.0), rtol=0, atol=1e-15)
    assert (cat["FN"] == 1).all()
    assert curves.area_under("all", class_index=0)["Oth"] == pytest.approx(0.5 * 51 / 101)
    # dog and car: objects, no detection (0); bird: no object (-1, left out of the mean over cat, dog, car)
    assert (curves.per_class["all"]["Oth"][1:3] == 0).all() and (curves.per_class["all"]["Oth"][3] == -1).all()
    np.testing.assert_allclose(curves.precision["all"]["Oth"], cat["Oth"] / 3, rtol=0, atol=1e-15)
    assert curves.num_objects["all"].tolist() == [2, 1, 1, 0]
    assert curves.area_under("all")["FN"] == 1.0
    # small objects: A (100 px²), B, A2 (400); the car (2500) is medium, so its detection (2000 px², outside the
    # range, matched to nothing at IoU .5) is ignored: at .5 the ranking is FP FP TP FP -> 1/3
    small = curves.per_class["small"]["C50"][0]
    np.testing.assert_allclose(small, np.where(up_to_half, 1 / 3, 0.0), rtol=0, atol=1e-15)


def test_loc_can_be_below_c50_as_with_pycocotools() -> None:
    """Not a bug: in the "large" range the small object S is ignored. At IoU .5 the first detection falls on S (and
    is dropped), the second takes the large object G: TP. At IoU .1 the first takes G instead (IoU .1024; real
    objects before ignored ones), the second is left with nothing: TP FP. With a second image's object found
    later (TP), C50 is 1 at every recall while Loc falls to 2/3 past recall .5."""
    g, s = [0, 0, 100, 100], [1, 1, 31, 31]  # 10000 and 900 px²
    images = [gt([g, s], [1, 1]), gt([[200, 200, 300, 300]], [1])]
    found = [det([[0, 0, 32, 32], g], [0.9, 0.8], [1, 1]), det([[200, 200, 300, 300]], [0.7], [1])]
    curves = coco_curves(found, images, ["a"])
    large = curves.per_class["large"]
    np.testing.assert_array_equal(large["C50"][0], np.ones(101))
    np.testing.assert_allclose(large["Loc"][0], np.where(RECALL_THRESHOLDS <= 0.5, 1.0, 2 / 3), rtol=0, atol=1e-15)
    ref = quiet_eval(coco_ground_truth(images, ["a"]), coco_results(found), 0.1)
    np.testing.assert_array_equal(large["Loc"][0], ref[:, 0, AREAS.index("large")])


def test_plot_writes_a_png(tmp_path: Path) -> None:
    curves = coco_curves(HAND_DETS, HAND_GTS, ["cat", "dog", "car", "bird"], ["animal", "animal", "vehicle", "animal"])
    out = tmp_path / "overall.png"
    plot_coco_curves(curves, out)
    plot_coco_curves(curves, tmp_path / "cat.png", class_index=0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "cat.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no objects"):
        plot_coco_curves(curves, tmp_path / "bird.png", class_index=3)
