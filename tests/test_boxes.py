import math

import pytest
import torch

from singleshot.boxes import (
    MAX_LOG_SCALE,
    box_area,
    box_intersection,
    box_iou,
    cxcywh_to_xyxy,
    decode,
    encode,
    xyxy_to_cxcywh,
)

#: compares float results of kernels: `make test` runs these again under other kernel choices
pytestmark = pytest.mark.numeric


def test_conversions_by_hand() -> None:
    xyxy = torch.tensor([[0.0, 0.0, 4.0, 2.0], [1.0, 2.0, 3.0, 6.0]])
    cxcywh = torch.tensor([[2.0, 1.0, 4.0, 2.0], [2.0, 4.0, 2.0, 4.0]])
    torch.testing.assert_close(xyxy_to_cxcywh(xyxy), cxcywh)
    torch.testing.assert_close(cxcywh_to_xyxy(cxcywh), xyxy)


def test_conversions_keep_leading_dims() -> None:
    boxes = torch.rand(2, 5, 4)
    assert cxcywh_to_xyxy(boxes).shape == (2, 5, 4)
    torch.testing.assert_close(xyxy_to_cxcywh(cxcywh_to_xyxy(boxes)), boxes)


def test_iou_and_area_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0, 1.0]]))
    torch.testing.assert_close(box_area(b), torch.tensor([4.0, 4.0, 4.0]))
    assert box_area(torch.tensor([3.0, 0.0, 1.0, 1.0])) == 0


def test_intersection_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [10.0, 10.0, 11.0, 12.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0], [0.0, -1.0, 1.0, 4.0]])
    expected = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])  # touching corners and far boxes share nothing
    torch.testing.assert_close(box_intersection(a, b), expected)
    assert box_intersection(a, b[:0]).shape == (2, 0)


def test_encode_is_the_paper_parametrisation() -> None:
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])  # cxcywh
    gt = torch.tensor([[0.4, 0.3, 0.8, 0.5]])  # cxcywh (0.6, 0.4, 0.4, 0.2)
    expected = torch.tensor([[0.1 / 0.2 / 0.1, -0.1 / 0.4 / 0.1, math.log(2.0) / 0.2, math.log(0.5) / 0.2]])
    torch.testing.assert_close(encode(gt, prior), expected)
    torch.testing.assert_close(encode(gt, prior, variances=(1.0, 1.0)), expected * torch.tensor([0.1, 0.1, 0.2, 0.2]))


def test_round_trip_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(1000, 2, generator=g), torch.rand(1000, 2, generator=g) * 0.9 + 0.05], 1)
    xy = torch.rand(1000, 2, generator=g)
    gt = torch.cat([xy, xy + torch.rand(1000, 2, generator=g) * 0.5 + 0.01], 1)
    torch.testing.assert_close(decode(encode(gt, priors), priors), gt, atol=1e-5, rtol=0)
    offsets = torch.randn(3, 1000, 4, generator=g)
    torch.testing.assert_close(encode(decode(offsets, priors), priors), offsets, atol=1e-4, rtol=1e-4)


def test_zero_offsets_decode_to_the_prior() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.05, 0.1]])
    torch.testing.assert_close(decode(torch.zeros(2, 4), priors), cxcywh_to_xyxy(priors))


def test_decode_stays_finite_on_huge_offsets() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.1, 0.1]])
    boxes = decode(torch.tensor([[0.0, 0.0, 1e6, 1e6]]), priors)
    assert torch.isfinite(boxes).all()
    assert boxes[0, 2] - boxes[0, 0] == pytest.approx(0.1 * math.exp(MAX_LOG_SCALE), rel=1e-5)
