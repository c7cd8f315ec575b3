"""Our models against torchvision's SSD models carrying the same (seeded random) weights."""

import pytest
import torch
from torch import nn
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
from torchvision.models.detection.image_list import ImageList

from singleshot.boxes import cxcywh_to_xyxy
from singleshot.convert.torchvision import build_from_torchvision, from_torchvision


def _randomise(model: nn.Module, predictors: list[nn.Sequential]) -> None:
    """Weights that give logits of order 1 (SSDLite's own init, torchvision's or ours, gives ~1e-14 outputs, all
    ties); ``predictors``: the head's final blocks (``[1]`` is the last convolution), scaled down."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.1)
    for block in predictors:
        block[1].weight.data.mul_(0.25)


def randomise_torchvision(model: nn.Module) -> None:
    """:func:`_randomise` on a torchvision SSD (its heads' final blocks)."""
    heads = model.head
    _randomise(model, [*heads.classification_head.module_list, *heads.regression_head.module_list])


CASES = {
    "ssd300_vgg16": (lambda: ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21), 300, False),
    "ssdlite320_mobilenet_v3": (
        lambda: ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21),
        320,
        True,
    ),
}


@pytest.mark.parametrize("name", [pytest.param("ssd300_vgg16", marks=pytest.mark.slow), "ssdlite320_mobilenet_v3"])
def test_same_outputs_as_torchvision(name: str) -> None:
    make, size, randomise = CASES[name]
    torch.manual_seed(0)
    reference = make().eval()
    if randomise:
        randomise_torchvision(reference)
    ours = build_from_torchvision(reference.state_dict(), name).eval()
    assert ours.num_classes == 20
    fast_layout = ours.memory_format == torch.channels_last
    ours.use_channels_last(False)  # compare in the reference's memory layout (same maths, same rounding)

    x = torch.randn(2, 3, size, size)  # the same pre-processed input for both
    with torch.no_grad():
        features = list(reference.backbone(x).values())
        expected = reference.head(features)
        cls_logits, bbox_regression = ours.head_outputs(x)
        anchors = reference.anchor_generator(ImageList(x, [(size, size)] * 2), features)
        want = reference.postprocess_detections(expected, anchors, [(size, size)] * 2)
        got = ours.postprocess(cls_logits, bbox_regression, ours.priors, [(size, size)] * 2)

    # the prior order is the same as torchvision's: no permutation needed
    torch.testing.assert_close(cls_logits, expected["cls_logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bbox_regression, expected["bbox_regression"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cxcywh_to_xyxy(ours.priors) * size, anchors[0], atol=1e-3, rtol=0)
    assert cls_logits.std() > 0.5  # not degenerate: scores are not all tied
    if fast_layout:  # the layout our builder picks for speed gives the same outputs up to rounding
        with torch.no_grad():
            fast_cls, fast_reg = ours.use_channels_last(True).head_outputs(x)
        torch.testing.assert_close(fast_cls, cls_logits, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(fast_reg, bbox_regression, atol=1e-3, rtol=1e-3)
    for a, b in zip(got, want, strict=True):
        assert a["boxes"].shape[0] > 50
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-6, rtol=0)
        assert torch.equal(a["labels"], b["labels"])


def test_conversion_rejects_a_foreign_state_dict() -> None:
    with pytest.raises(KeyError, match="no counterpart"):
        from_torchvision({"roi_heads.box_predictor.cls_score.weight": torch.zeros(1)}, "ssd300_vgg16")
    with pytest.raises(KeyError, match="no torchvision conversion"):
        from_torchvision({}, "ssd512_vgg16")


@pytest.mark.parametrize(
    "name", ["ssd_tiny160", "ssdlite320_mobilenet_v3", pytest.param("ssd300_vgg16", marks=pytest.mark.slow)]
)
def test_to_torchvision_carries_our_weights_and_boxes(name: str) -> None:
    """The benchmarks' reference: torchvision's SSD with our weights gives our head outputs, default boxes and
    detections."""
    from singleshot import build
    from singleshot.convert.torchvision import to_torchvision

    torch.manual_seed(0)
    ours = build(name, num_classes=3).eval()
    if name == "ssdlite320_mobilenet_v3":
        _randomise(ours, [*ours.head.cls, *ours.head.reg])
    ours.use_channels_last(False)
    reference = to_torchvision(ours)
    size = ours.preprocessing.image_size
    assert reference.transform.image_mean == list(ours.preprocessing.mean)
    assert (reference.score_thresh, reference.detections_per_img) == (
        ours.postprocess.score_threshold, ours.postprocess.detections_per_image,
    )  # fmt: skip
    x = torch.randn(2, *(3, *size))
    with torch.no_grad():
        features = list(reference.backbone(x).values())
        expected = reference.head(features)
        cls_logits, bbox_regression = ours.head_outputs(x)
        anchors = reference.anchor_generator(ImageList(x, [size] * 2), features)
        want = reference.postprocess_detections(expected, anchors, [size] * 2)
        got = ours.postprocess(cls_logits, bbox_regression, ours.priors, [size] * 2)
    torch.testing.assert_close(expected["cls_logits"], cls_logits)
    torch.testing.assert_close(expected["bbox_regression"], bbox_regression)
    torch.testing.assert_close(anchors[0] / size[0], cxcywh_to_xyxy(ours.priors))
    for g, w in zip(got, want, strict=True):
        assert len(g["scores"]) > 0
        torch.testing.assert_close(g["scores"], w["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(g["boxes"], w["boxes"], atol=1e-3, rtol=0)
