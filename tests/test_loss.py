import math

import pytest
import torch
import torch.nn.functional as F

from singleshot.boxes import encode, xyxy_to_cxcywh
from singleshot.loss import MultiBoxLoss, hard_negative_mask

#: compares float results of kernels: `make test` runs these again under other kernel choices
pytestmark = pytest.mark.numeric

# Eight priors: 0.25 x 0.5 cells of a 4 x 2 grid over the unit square (xyxy), row-major.
PRIORS_XYXY = torch.tensor(
    [[x / 4, y / 2, (x + 1) / 4, (y + 1) / 2] for y in range(2) for x in range(4)], dtype=torch.float32
)
PRIORS = xyxy_to_cxcywh(PRIORS_XYXY)


def _target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}


def test_hard_negative_mask_keeps_top_losses_and_never_positives() -> None:
    loss = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    positive = torch.tensor([[True, False, False, False, False, False], [False] * 6])
    mask = hard_negative_mask(loss, positive, torch.tensor([3, 10]))
    assert mask[0].tolist() == [False, True, True, True, False, False]
    assert mask[1].all()  # asked for 10, only 6 available


def test_loss_by_hand() -> None:
    # one ground truth exactly on prior 5 (class 2); 3:1 mining keeps 3 of the 7 negatives
    target = _target([[0.25, 0.5, 0.5, 1.0]], [2])
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 8, 4, generator=g)
    offsets = torch.randn(1, 8, 4, generator=g)
    out = MultiBoxLoss()(logits, offsets, [target], PRIORS)

    labels = torch.tensor([0, 0, 0, 0, 0, 2, 0, 0])
    ce = F.cross_entropy(logits[0], labels, reduction="none")
    neg = [i for i in range(8) if i != 5]
    hardest = sorted(neg, key=lambda i: -ce[i].item())[:3]
    expected_cls = ce[5] + sum(ce[i] for i in hardest)
    assert out["loss_cls"].item() == pytest.approx(expected_cls.item(), rel=1e-6)
    # zero target offsets: the box loss is smooth-L1 of the prediction itself
    expected_box = F.smooth_l1_loss(offsets[0, 5], torch.zeros(4), reduction="sum")
    assert out["loss_box"].item() == pytest.approx(expected_box.item(), rel=1e-6)


def test_division_by_number_of_matches_and_regression_targets() -> None:
    gt = [[0.0, 0.0, 0.3, 0.45], [0.5, 0.5, 1.0, 1.0]]  # prior 0; priors 6 and 7 (IoU 0.5 each)
    target = _target(gt, [1, 3])
    loss = MultiBoxLoss()
    labels, offsets = loss.build_targets([target], PRIORS)
    assert labels[0].tolist() == [1, 0, 0, 0, 0, 0, 3, 3]
    torch.testing.assert_close(offsets[0, 0], encode(torch.tensor(gt[:1]), PRIORS[:1])[0])
    torch.testing.assert_close(offsets[0, 1], torch.zeros(4))
    zeros = torch.zeros(1, 8, 4)
    out = loss(torch.zeros(1, 8, 4), zeros, [target], PRIORS)
    # uniform logits: every selected box costs log(4); 3 positives and 5 (of 3*3=9 wanted) negatives, / N = 3
    assert out["loss_cls"].item() == pytest.approx(8 * math.log(4) / 3, rel=1e-6)
    assert out["loss_box"].item() == pytest.approx(
        F.smooth_l1_loss(zeros[0, [0, 6, 7]], offsets[0, [0, 6, 7]], reduction="sum").item() / 3, rel=1e-6
    )


def test_image_without_objects_has_zero_loss_and_a_gradient_path() -> None:
    logits = torch.randn(1, 8, 4, requires_grad=True)
    offsets = torch.randn(1, 8, 4, requires_grad=True)
    out = MultiBoxLoss()(logits, offsets, [_target([], [])], PRIORS)
    assert out["loss_cls"].item() == 0 and out["loss_box"].item() == 0
    (out["loss_cls"] + out["loss_box"]).backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_empty_image_in_a_batch_adds_bounded_negatives_and_no_localisation() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 8, 4, generator=g)
    offsets = torch.randn(2, 8, 4, generator=g)
    full = _target([[0.25, 0.5, 0.5, 1.0]], [2])
    loss = MultiBoxLoss()
    both = loss(logits, offsets, [full, _target([], [])], PRIORS)
    alone = loss(logits[:1], offsets[:1], [full], PRIORS)
    assert torch.isfinite(both["loss_cls"]) and torch.isfinite(both["loss_box"])
    assert both["loss_box"].item() == pytest.approx(alone["loss_box"].item())  # empty image: no localisation
    # the empty image keeps 3 * ceil(N / B) = 3 * ceil(1 / 2) = 3 hardest negatives
    ce_empty = F.cross_entropy(logits[1], torch.zeros(8, dtype=torch.long), reduction="none")
    extra = ce_empty.topk(3).values.sum()
    assert both["loss_cls"].item() == pytest.approx(alone["loss_cls"].item() + extra.item(), rel=1e-6)


def test_alpha_weights_localisation() -> None:
    target = _target([[0.0, 0.0, 0.3, 0.45]], [1])
    logits, offsets = torch.randn(1, 8, 4), torch.randn(1, 8, 4)
    one = MultiBoxLoss(alpha=1.0)(logits, offsets, [target], PRIORS)
    two = MultiBoxLoss(alpha=2.0)(logits, offsets, [target], PRIORS)
    assert two["loss_box"].item() == pytest.approx(2 * one["loss_box"].item())
    assert two["loss_cls"].item() == pytest.approx(one["loss_cls"].item())
