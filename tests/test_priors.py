import math

import pytest
import torch

from singleshot.boxes import cxcywh_to_xyxy
from singleshot.models import SSD300_BOXES, SSD512_BOXES, SSDLITE320_BOXES
from singleshot.priors import DefaultBoxConfig, boxes_per_location, layer_default_boxes, linear_scales

#: compares float results of kernels: `make test` runs these again under other kernel choices
pytestmark = pytest.mark.numeric


def test_paper_box_counts() -> None:
    assert SSD300_BOXES.num_boxes() == 8732
    assert SSD300_BOXES.generate().shape == (8732, 4)
    assert SSD300_BOXES.boxes_per_layer() == [5776, 2166, 600, 150, 36, 4]
    assert SSD512_BOXES.num_boxes() == 24564
    assert SSD512_BOXES.generate().shape == (24564, 4)
    assert SSDLITE320_BOXES.generate().shape == (3234, 4)


def test_order_inside_the_first_cell_of_ssd300() -> None:
    boxes = SSD300_BOXES.generate()[:4] * 300  # conv4_3: min 30, max 60, ratio 2; step 8, centre 4 px
    s2 = math.sqrt(2.0)
    expected = torch.tensor(
        [
            [4.0, 4.0, 30.0, 30.0],
            [4.0, 4.0, math.sqrt(30 * 60), math.sqrt(30 * 60)],
            [4.0, 4.0, 30 * s2, 30 / s2],
            [4.0, 4.0, 30 / s2, 30 * s2],
        ]
    )
    torch.testing.assert_close(boxes, expected, atol=1e-4, rtol=0)


def test_cells_are_row_major_and_layers_in_order() -> None:
    boxes = SSD300_BOXES.generate() * 300
    # second cell of row 0 moves right by one step (8 px); cell 38 starts row 1
    torch.testing.assert_close(boxes[4, :2], torch.tensor([12.0, 4.0]))
    torch.testing.assert_close(boxes[38 * 4, :2], torch.tensor([4.0, 12.0]))
    # fc7 (19x19, step 16, 6 boxes: ratios 2 and 3) starts after conv4_3's 5776 boxes
    first_fc7 = boxes[5776:5782]
    torch.testing.assert_close(first_fc7[:, :2], torch.full((6, 2), 8.0))
    s3 = math.sqrt(3.0)
    torch.testing.assert_close(first_fc7[4:, 2:], torch.tensor([[60 * s3, 60 / s3], [60 / s3, 60 * s3]]))
    # the last box is the 1x1 layer's 1/2 box, centred
    torch.testing.assert_close(boxes[-1], torch.tensor([150.0, 150.0, 264 / math.sqrt(2), 264 * math.sqrt(2)]))


@pytest.mark.parametrize(
    ("ratios", "flip", "has_max", "expected"),
    [
        ((2,), True, True, 4),
        ((2, 3), True, True, 6),
        ((2, 3), False, True, 4),
        ((1, 2), True, True, 4),  # ratio 1 is the square box already
        ((2, 0.5), True, True, 4),  # 0.5 is 2 flipped
        ((2,), True, False, 3),
    ],
)
def test_boxes_per_location_is_derived_from_ratios(ratios, flip, has_max, expected) -> None:
    assert boxes_per_location(ratios, flip, has_max) == expected
    boxes = layer_default_boxes(
        (2, 3), (60, 90), min_size=10, max_size=20 if has_max else None, aspect_ratios=ratios, flip=flip
    )
    assert boxes.shape == (2 * 3 * expected, 4)


def test_step_defaults_to_image_over_feature_and_offset() -> None:
    boxes = layer_default_boxes((2, 4), (100, 200), min_size=10, max_size=None, aspect_ratios=(), offset=0.5)
    centres = boxes[:, :2] * torch.tensor([200.0, 100.0])
    torch.testing.assert_close(centres[:4, 0], torch.tensor([25.0, 75.0, 125.0, 175.0]))
    torch.testing.assert_close(centres[::4, 1], torch.tensor([25.0, 75.0]))
    shifted = layer_default_boxes(
        (2, 4), (100, 200), min_size=10, max_size=None, aspect_ratios=(), step=(40, 30), offset=0.0
    )
    torch.testing.assert_close(shifted[4, :2] * torch.tensor([200.0, 100.0]), torch.tensor([0.0, 40.0]))


def test_clip_and_clamp() -> None:
    # 80*sqrt(3) = 138 px wide
    raw = layer_default_boxes((1, 1), (100, 100), min_size=80, max_size=None, aspect_ratios=(3,))
    assert cxcywh_to_xyxy(raw).min() < 0 and raw[:, 2:].max() > 1
    clipped = layer_default_boxes((1, 1), (100, 100), min_size=80, max_size=None, aspect_ratios=(3,), clip=True)
    xyxy = cxcywh_to_xyxy(clipped)
    assert xyxy.min() >= 0 and xyxy.max() <= 1
    torch.testing.assert_close(xyxy[1], torch.tensor([0.0, 0.5 - 0.4 / math.sqrt(3), 1.0, 0.5 + 0.4 / math.sqrt(3)]))
    clamped = layer_default_boxes((1, 1), (100, 100), min_size=80, max_size=None, aspect_ratios=(3,), clamp_wh=True)
    assert clamped[1, 2] == 1.0 and clamped[1, 3] == pytest.approx(0.8 / math.sqrt(3))


def test_linear_scales_is_the_paper_rule() -> None:
    torch.testing.assert_close(
        torch.tensor(linear_scales(6, 0.2, 0.9)), torch.tensor([0.2, 0.34, 0.48, 0.62, 0.76, 0.9])
    )


def test_from_scales_designs_boxes() -> None:
    cfg = DefaultBoxConfig.from_scales(300, [38, 19, 10, 5, 3, 1], [[2]] * 6, s_min=0.2, s_max=0.9)
    assert cfg.feature_sizes[0] == (38, 38)
    assert cfg.min_sizes[0] == pytest.approx(60.0) and cfg.min_sizes[-1] == pytest.approx(270.0)
    assert cfg.max_sizes[-1] == pytest.approx(312.0)  # one more step of the rule: 0.9 + 0.14
    assert cfg.num_boxes() == 4 * (38 * 38 + 19 * 19 + 100 + 25 + 9 + 1)
    assert SSDLITE320_BOXES.min_sizes[0] == pytest.approx(64.0) and SSDLITE320_BOXES.max_sizes[-1] == 320.0


def test_config_rejects_inconsistent_lengths() -> None:
    with pytest.raises(ValueError, match="min_sizes"):
        DefaultBoxConfig(
            (300, 300), ((38, 38), (19, 19)), min_sizes=(30,), max_sizes=(60, 111), aspect_ratios=((2,), (2,))
        )
