import pytest
import torch

from singleshot.boxes import box_iou
from singleshot.matching import match, match_batch

#: compares float results of kernels: `make test` runs these again under other kernel choices
pytestmark = pytest.mark.numeric

# Four unit-square priors side by side on a row (xyxy).
PRIORS = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0], [2.0, 0.0, 3.0, 1.0], [3.0, 0.0, 4.0, 1.0]])


def test_no_ground_truth_is_all_background() -> None:
    assert match(torch.zeros(0, 4), PRIORS).tolist() == [-1, -1, -1, -1]


def test_threshold_is_inclusive() -> None:
    gt = torch.tensor([[0.0, 0.0, 1.0, 0.5], [2.0, 0.0, 3.0, 0.49]])  # IoU 0.5 with prior 0, 0.49 with prior 2
    iou = box_iou(gt, PRIORS)
    assert iou[0, 0] == 0.5
    m = match(gt, PRIORS, iou_threshold=0.5)
    assert m.tolist() == [0, -1, 1, -1]  # gt 1 is below threshold but still takes its best prior


def test_low_overlap_ground_truth_still_gets_exactly_its_best_prior() -> None:
    gt = torch.tensor([[1.6, 0.0, 2.2, 0.3]])  # IoU 0.12 with prior 1, 0.06 with prior 2
    assert match(gt, PRIORS).tolist() == [-1, 0, -1, -1]


def test_per_prediction_step_takes_best_ground_truth_above_threshold() -> None:
    gt = torch.tensor([[0.0, 0.0, 2.0, 1.0], [3.0, 0.0, 4.0, 1.0]])
    # priors 0 and 1 both have IoU 0.5 with gt 0: one is its forced prior, the other passes the threshold
    assert match(gt, PRIORS).tolist() == [0, 0, -1, 1]
    assert match(gt, PRIORS, iou_threshold=0.6).tolist() == [0, -1, -1, 1]


def test_two_ground_truths_competing_for_one_prior_both_get_one() -> None:
    # Both ground truths overlap prior 1 best; gt 0 more so. gt 1 must fall back to its next-best prior, 2.
    gt = torch.tensor([[1.0, 0.0, 2.0, 0.9], [1.2, 0.0, 2.4, 1.0]])
    iou = box_iou(gt, PRIORS)
    assert iou[0].argmax() == 1 and iou[1].argmax() == 1 and iou[0, 1] > iou[1, 1]
    m = match(gt, PRIORS, iou_threshold=0.95)  # only the bipartite step
    assert m.tolist() == [-1, 0, 1, -1]


def test_no_ground_truth_loses_its_only_prior() -> None:
    # gt 0 overlaps only prior 1 (IoU 0.3). gt 1 overlaps prior 1 more (0.4) but also prior 2.
    # Greedy on the best pair alone would leave gt 0 without a prior.
    gt = torch.tensor([[1.2, 0.0, 1.5, 1.0], [1.4, 0.0, 2.45, 1.0]])
    iou = box_iou(gt, PRIORS)
    assert (iou[0] > 0).sum() == 1 and iou[1, 1] > iou[0, 1] and iou[1, 2] > 0
    m = match(gt, PRIORS, iou_threshold=0.95)
    assert m.tolist() == [-1, 0, 1, -1]


def _max_assignment(overlaps: list[set[int]], taken: frozenset[int] = frozenset()) -> int:
    """Most ground truths that can get distinct overlapping priors (brute force, for small cases)."""
    if not overlaps:
        return 0
    best = _max_assignment(overlaps[1:], taken)  # leave the first one out
    for p in overlaps[0] - taken:
        best = max(best, 1 + _max_assignment(overlaps[1:], taken | {p}))
    return best


def test_crowds_get_as_many_distinct_priors_as_possible() -> None:
    g = torch.Generator().manual_seed(1)
    priors = torch.tensor([[x, y, x + 1.0, y + 1.0] for y in range(4) for x in range(4)])
    for _ in range(60):
        xy = torch.rand(6, 2, generator=g) * 1.5
        gt = torch.cat([xy, xy + 0.2 + torch.rand(6, 2, generator=g)], 1)  # 6 boxes crowded in one corner
        m = match(gt, priors, iou_threshold=1.1)  # bipartite step only
        forced = m[m >= 0]
        assert forced.unique().numel() == forced.numel()  # one prior per ground truth
        overlaps = [set((row > 0).nonzero().flatten().tolist()) for row in box_iou(gt, priors)]
        assert forced.numel() == _max_assignment(overlaps)


def test_batch_helper_equals_per_image() -> None:
    gts = [torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.zeros(0, 4), torch.tensor([[2.5, 0.0, 4.0, 1.0]])]
    out = match_batch(gts, PRIORS)
    assert out.shape == (3, 4)
    for row, gt in zip(out, gts, strict=True):
        assert row.tolist() == match(gt, PRIORS).tolist()


def test_batch_helper_equals_per_image_on_random_crowds() -> None:
    g = torch.Generator().manual_seed(2)
    priors = torch.tensor([[x, y, x + 1.0, y + 1.0] for y in range(4) for x in range(4)]) / 4
    gts = []
    for n in (0, 1, 3, 6, 6, 2):
        xy = torch.rand(n, 2, generator=g) * 0.5
        gts.append(torch.cat([xy, xy + 0.05 + torch.rand(n, 2, generator=g) * 0.4], 1))
    for threshold in (0.3, 0.5, 1.1):
        batch = match_batch(gts, priors, threshold)
        for row, gt in zip(batch, gts, strict=True):
            assert row.tolist() == match(gt, priors, threshold).tolist()
