"""The SSD paper's error analysis after Hoiem et al. (Figs. 3 and 4): false-positive types, their cumulative
shares, normalised AP and the size / aspect-ratio buckets, on cases small enough to check by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from singleshot.analysis.sensitivity import (
    ASPECT_BUCKETS,
    BG,
    COR,
    FP_TYPES,
    LOC,
    OTH,
    SIM,
    SIZE_BUCKETS,
    VOC_CLASS_NAMES,
    paper_figures,
    plot_ranked_errors,
    plot_sensitivity,
    ranked_errors,
    sensitivity,
)
from singleshot.metrics import match_detections
from singleshot.types import Detection, Target


def det(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detection:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def gt(boxes: list[list[float]], labels: list[int], difficult: list[bool] | None = None) -> Target:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult or [False] * len(labels), dtype=torch.bool),
    }


# Three classes: cat (1) and dog (2) are similar (both animals), car (3) is not.
NAMES = ["cat", "dog", "car"]
SUPER = ["animal", "animal", "vehicle"]
CAT, DOG, CAR, DIFFICULT_CAT = [0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]
# Image 0: a cat, a dog, a car and a difficult cat. Image 1: no object.
GTS = [gt([CAT, DOG, CAR, DIFFICULT_CAT], [1, 2, 3, 1], [False, False, False, True]), gt([], [])]
DETS = [
    det(
        [
            CAT,  # .99 cat on the cat: Cor
            DIFFICULT_CAT,  # .95 cat on the difficult cat: ignored by the VOC rule, left out
            CAT,  # .90 cat on the cat again: duplicate -> Loc
            [0, 0, 10, 4],  # .80 cat, IoU .4 with the cat -> Loc
            DOG,  # .70 cat on the dog (similar) -> Sim
            CAR,  # .60 cat on the car (other) -> Oth
            [80, 80, 90, 90],  # .50 cat on nothing -> BG
            [0, 0, 10, 0.5],  # .40 cat, IoU .05 with the cat (< .1) -> BG
            [5, 0, 25, 10],  # .30 cat, IoU .2 with the cat and .2 with the dog: its own class first -> Loc
            CAT,  # .85 dog on the cat (similar) -> Sim
            CAR,  # .90 car on the car -> Cor
            DOG,  # .80 car on the dog (not similar) -> Oth
        ],
        [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.85, 0.9, 0.8],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 3],
    ),
    det([CAT], [0.65], [1]),  # .65 cat in image 1, where nothing is: BG (image 0's cat does not count)
]
CAT_KINDS = [COR, LOC, LOC, SIM, BG, OTH, BG, BG, LOC]  # by decreasing score
DOG_KINDS = [SIM]
CAR_KINDS = [COR, OTH]


def close(got: torch.Tensor, expected: list[float] | list[list[float]]) -> bool:
    return torch.allclose(got.double(), torch.tensor(expected, dtype=torch.float64))


def shares(*kinds: int) -> list[float]:
    return [kinds.count(k) / len(kinds) for k in range(len(FP_TYPES))]


def test_every_detection_gets_its_type_in_rank_order_per_class() -> None:
    errors = ranked_errors(DETS, GTS, NAMES, SUPER)
    assert errors.labels.tolist() == [1] * 9 + [2] + [3] * 2
    assert errors.kinds.tolist() == CAT_KINDS + DOG_KINDS + CAR_KINDS
    assert errors.scores[:9].tolist() == pytest.approx([0.99, 0.9, 0.8, 0.7, 0.65, 0.6, 0.5, 0.4, 0.3])
    assert errors.images[:9].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert errors.num_objects.tolist() == [1, 1, 1]  # the difficult cat is no object to find
    # the correct ones are exactly the VOC rule's true positives
    matches = match_detections(DETS, GTS, 3)
    assert int((errors.kinds == COR).sum()) == int(matches.tp.sum()) == 2


def test_both_figures_from_one_matching_equal_each_alone() -> None:
    ranked, sens = paper_figures(DETS, GTS, NAMES, SUPER)
    alone_ranked, alone_sens = ranked_errors(DETS, GTS, NAMES, SUPER), sensitivity(DETS, GTS, NAMES)
    for name in ("labels", "scores", "images", "kinds", "found_weak", "num_objects"):
        assert torch.equal(getattr(ranked, name), getattr(alone_ranked, name)), name
    for name in ("ap_n", "size_ap", "aspect_ap", "size_objects", "aspect_objects", "size_cuts", "aspect_cuts"):
        assert torch.equal(getattr(sens, name).nan_to_num(-1), getattr(alone_sens, name).nan_to_num(-1)), name
    assert sens.normaliser == alone_sens.normaliser
    assert ranked.kinds[ranked.labels == 1].tolist() == CAT_KINDS


def test_without_supercategories_no_class_is_similar() -> None:
    errors = ranked_errors(DETS, GTS, NAMES)
    assert errors.kinds.tolist() == [COR, LOC, LOC, OTH, BG, OTH, BG, BG, LOC, OTH, *CAR_KINDS]


def test_voc_classes_use_hoiems_similar_groups() -> None:
    names = sorted(VOC_CLASS_NAMES)
    label = {name: names.index(name) + 1 for name in names}
    targets = [gt([CAT, DOG, CAR], [label["dog"], label["bird"], label["chair"]])]
    detections = [
        det(
            [CAT, CAT, CAT, DOG, CAR, CAR],
            [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            [label[n] for n in ("person", "horse", "bottle", "aeroplane", "sofa", "bus")],
        )
    ]
    errors = ranked_errors(detections, targets, names)
    kind = dict(zip(errors.labels.tolist(), errors.kinds.tolist(), strict=True))
    assert kind[label["person"]] == SIM  # the toolkit's animals include the person
    assert kind[label["horse"]] == SIM
    assert kind[label["bottle"]] == OTH
    assert kind[label["aeroplane"]] == SIM  # aeroplane and bird: "air objects"
    assert kind[label["sofa"]] == SIM  # furniture
    assert kind[label["bus"]] == OTH


def test_cumulative_shares_of_the_top_detections() -> None:
    errors = ranked_errors(DETS, GTS, NAMES, SUPER)
    multiples = [1, 4, 8, 16]  # one cat: the top 1, 4, 8 and (past the end) all 9 detections
    got = errors.cumulative("cat", multiples)
    expected = [shares(*CAT_KINDS[:k]) for k in (1, 4, 8, 9)]
    assert close(got, expected)
    assert got.shape == (4, len(FP_TYPES))
    # several classes: taken in turn by rank (cat 1st, car 1st, cat 2nd, car 2nd, ...), n = mean objects (1)
    both = errors.cumulative(["cat", 2], [2, 4])
    assert close(both, [shares(COR, COR), shares(COR, COR, LOC, OTH)])


def test_cumulative_shares_sum_to_one_at_every_point() -> None:
    errors = ranked_errors(DETS, GTS, NAMES, SUPER)
    for classes in (None, "cat", "dog", "car", ["cat", "dog"]):
        total = errors.cumulative(classes).sum(dim=1)
        assert torch.allclose(total, torch.ones_like(total)), classes
        fp_total = errors.false_positives(classes).sum(dim=1)
        assert torch.allclose(fp_total, torch.ones_like(fp_total)), classes


def test_false_positive_shares_of_the_top_false_positives() -> None:
    errors = ranked_errors(DETS, GTS, NAMES, SUPER)
    fps = [k for k in CAT_KINDS if k != COR]  # Loc Loc Sim BG Oth BG BG Loc
    got = errors.false_positives("cat", [1, 3, 5, 100])
    expected = [shares(*fps[:k])[1:] for k in (1, 3, 5, 8)]
    assert close(got, expected)


def test_recall_strong_and_weak() -> None:
    targets = [gt([CAT], [1])]
    detections = [det([[0, 0, 10, 3], CAT], [0.9, 0.8], [1, 1])]  # IoU .3 first, then a hit
    recall = ranked_errors(detections, targets, ["cat"]).recall("cat", [1, 2])
    assert recall.tolist() == [[0.0, 1.0], [1.0, 1.0]]  # VOC recall, weak recall (IoU >= .1)


def test_no_detections_gives_nan_shares_and_zero_ap() -> None:
    empty = [det([], [], []), det([], [], [])]
    errors = ranked_errors(empty, GTS, NAMES, SUPER)
    assert errors.kinds.numel() == 0
    assert errors.cumulative().isnan().all()
    sens = sensitivity(empty, GTS, NAMES)
    assert sens.ap_n.tolist() == [0.0, 0.0, 0.0]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="supercategories"):
        ranked_errors(DETS, GTS, NAMES, ["animal"])
    with pytest.raises(ValueError, match="detection labels"):
        ranked_errors([det([CAT], [0.9], [4]), det([], [], [])], GTS, NAMES)


def test_normalised_ap_by_hand() -> None:
    # 10 images, so N = 0.15 * 10 = 1.5; two cats; ranked FP, TP, TP.
    # P_N = R·N / (R·N + F): after the first hit .75 / 1.75 = .43, after the second 1.5 / 2.5 = .6;
    # the envelope is .6 at both hits: AP_N = (.6 + .6) / 2 = .6 (plain all-point AP would be 2/3).
    targets = [gt([CAT, DOG], [1, 1])] + [gt([], []) for _ in range(9)]
    detections = [det([CAR, CAT, DOG], [0.9, 0.8, 0.7], [1, 1, 1])] + [det([], [], []) for _ in range(9)]
    sens = sensitivity(detections, targets, ["cat"])
    assert sens.normaliser == pytest.approx(1.5)
    assert sens.ap_n.tolist() == pytest.approx([0.6])


def hundred_squares(found: range = range(100)) -> tuple[list[Detection], list[Target]]:
    """100 images, one cat each: object ``k`` is ``k + 1`` wide and ``100 - k`` high (aspect ratios all different,
    growing with ``k``; areas equal in pairs ``k``, ``99 - k``, smallest at both ends); a perfect detection of the
    objects ``found``."""
    targets, detections = [], []
    for k in range(100):
        box = [0.0, 0.0, k + 1.0, 100.0 - k]
        targets.append(gt([box], [1]))
        detections.append(det([box], [0.5 + k / 1000], [1]) if k in found else det([], [], []))
    return detections, targets


def test_bucket_boundaries_are_percentiles() -> None:
    detections, targets = hundred_squares()
    sens = sensitivity(detections, targets, ["cat"])
    assert sens.size_objects.tolist() == [[10, 20, 40, 20, 10]]  # XS, S, M, L, XL
    assert sens.aspect_objects.tolist() == [[10, 20, 40, 20, 10]]  # XT, T, M, W, XW
    # cut points: the 10th, 30th, 70th and 90th smallest values (objects k = 9, 29, 69, 89)
    areas = [(k + 1.0) * (100 - k) for k in range(100)]
    widths = [(k + 1.0) / (100 - k) for k in range(100)]
    # area (k + 1)(100 - k) is not monotone in k: the cut points are order statistics of the areas
    assert sens.size_cuts[0].tolist() == pytest.approx([sorted(areas)[i] for i in (9, 29, 69, 89)])
    assert sens.aspect_cuts[0].tolist() == pytest.approx([widths[i] for i in (9, 29, 69, 89)])


def test_hoiems_rounding_of_the_cut_positions() -> None:
    # 5 objects: positions round(.5, 1.5, 3.5, 4.5) = 1, 2, 4, 5 (half away from zero), so the largest object
    # equals the last cut point and lies in L; XL is empty
    targets = [gt([[0, 0, s, 1]], [1]) for s in (1, 2, 3, 4, 5)]
    detections = [det([], [], []) for _ in targets]
    sens = sensitivity(detections, targets, ["cat"])
    assert sens.size_cuts[0].tolist() == [1.0, 2.0, 4.0, 5.0]
    assert sens.size_objects.tolist() == [[1, 1, 2, 1, 0]]
    assert math.isnan(sens.size_ap[0, 4])  # a bucket without objects has no AP


def test_a_perfect_detector_has_normalised_ap_one_in_every_bucket() -> None:
    detections, targets = hundred_squares()
    sens = sensitivity(detections, targets, ["cat"])
    assert sens.ap_n.tolist() == pytest.approx([1.0])
    assert close(sens.size_ap, [[1.0] * 5])
    assert close(sens.aspect_ap, [[1.0] * 5])


def test_missing_only_small_objects_hurts_only_the_small_buckets() -> None:
    areas = [(k + 1.0) * (100 - k) for k in range(100)]
    by_area = sorted(range(100), key=lambda k: areas[k])
    smallest_20 = set(by_area[:20])  # all of XS and half of S
    detections, targets = hundred_squares(found=range(100))
    detections = [d if k not in smallest_20 else det([], [], []) for k, d in enumerate(detections)]
    # and two false positives ranked first, so that the found buckets are below 1 but high
    assert 0 in smallest_20 and detections[0]["labels"].numel() == 0
    detections[0] = det([[500, 500, 600, 600], [700, 700, 800, 800]], [0.99, 0.98], [1, 1])
    sens = sensitivity(detections, targets, ["cat"])
    xs, s, _, large, xl = sens.size_ap[0].tolist()
    assert xs == 0.0
    assert 0.0 < s < 0.6
    assert large > 0.8 and xl > 0.8
    assert sens.impact()["size"] == pytest.approx((0.0, max(sens.size_ap[0].tolist())))


def test_difficult_objects_count_neither_way() -> None:
    detections, targets = hundred_squares()
    plain = sensitivity(detections, targets, ["cat"])
    # a difficult cat in image 0, found first: neither a positive nor a false positive, nor in any bucket
    targets[0] = gt([[0, 0, 1, 100], [200, 200, 300, 300]], [1, 1], [False, True])
    detections[0] = det([[0, 0, 1, 100], [200, 200, 300, 300]], [0.5, 0.999], [1, 1])
    with_difficult = sensitivity(detections, targets, ["cat"])
    assert close(plain.ap_n, [1.0]) and close(with_difficult.ap_n, [1.0])
    assert close(with_difficult.size_ap, plain.size_ap.tolist())
    assert with_difficult.size_objects.tolist() == plain.size_objects.tolist()
    assert with_difficult.size_cuts.tolist() == plain.size_cuts.tolist()
    assert ranked_errors(detections, targets, ["cat"]).kinds.tolist() == [COR] * 100


def test_plots_are_written(tmp_path: Path) -> None:
    errors = ranked_errors(DETS, GTS, NAMES, SUPER)
    plot_ranked_errors(errors, tmp_path / "fig3.png", {"animals": ["cat", "dog"], "car": "car"})
    detections, targets = hundred_squares(found=range(20, 100))
    plot_sensitivity(sensitivity(detections, targets, ["cat"]), tmp_path / "fig4.png")
    assert (tmp_path / "fig3.png").stat().st_size > 10_000
    assert (tmp_path / "fig4.png").stat().st_size > 10_000
    assert len(SIZE_BUCKETS) == len(ASPECT_BUCKETS) == 5
