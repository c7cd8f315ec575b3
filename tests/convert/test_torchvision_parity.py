"""Our models against torchvision's SSD models carrying the same (seeded random) weights."""

import copy
from dataclasses import dataclass

import pytest
import torch
from conftest import float32_tolerance, randomise_weights
from torch import nn
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
from torchvision.models.detection.image_list import ImageList

from singleshot.boxes import cxcywh_to_xyxy
from singleshot.convert.torchvision import build_from_torchvision, from_torchvision
from singleshot.ssd import SSD


def randomise_torchvision(model: nn.Module) -> None:
    """:func:`conftest.randomise_weights` on a torchvision SSD (its heads' final blocks)."""
    heads = model.head
    randomise_weights(model, [*heads.classification_head.module_list, *heads.regression_head.module_list])


CASES = {
    "ssd300_vgg16": (lambda: ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21), 300, False),
    "ssdlite320_mobilenet_v3": (
        lambda: ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21),
        320,
        True,
    ),
}


@dataclass
class _BothRuns:
    """Both models' head outputs in float64 on the same input, and each one's float32 post-processing of the same
    (torchvision's) float32 head outputs: the mapping is checked without float32 noise (``assert_close``'s float64
    defaults, 1e-7, against rounding of ~1e-12; a wrong mapping moves outputs by O(1)), and our post-processor,
    which runs only in float32, on identical inputs."""

    expected: dict[str, torch.Tensor]  # torchvision's head outputs, float64
    cls_logits: torch.Tensor  # ours, float64
    bbox_regression: torch.Tensor
    anchors: list[torch.Tensor]  # torchvision's default boxes (float32, pixels)
    want: list[dict[str, torch.Tensor]]  # torchvision's detections
    got: list[dict[str, torch.Tensor]]  # ours


def _run_both(ours: SSD, reference: nn.Module, x: torch.Tensor) -> _BothRuns:
    sizes = [tuple(x.shape[-2:])] * len(x)
    ours64, reference64, x64 = copy.deepcopy(ours).double(), copy.deepcopy(reference).double(), x.double()
    with torch.no_grad():
        features = list(reference64.backbone(x64).values())
        expected = reference64.head(features)
        cls_logits, bbox_regression = ours64.head_outputs(x64)
        head32 = {k: v.float() for k, v in expected.items()}
        anchors = reference.anchor_generator(ImageList(x, sizes), [f.float() for f in features])
        want = reference.postprocess_detections(head32, anchors, sizes)
        got = ours.postprocess(head32["cls_logits"], head32["bbox_regression"], sizes, priors_cxcywh=ours.priors)
    return _BothRuns(expected, cls_logits, bbox_regression, anchors, want, got)


@pytest.mark.parametrize("name", [pytest.param("ssd300_vgg16", marks=pytest.mark.slow), "ssdlite320_mobilenet_v3"])
@pytest.mark.numeric
def test_same_outputs_as_torchvision(name: str) -> None:
    """Both models in float64 on the same input (see :class:`_BothRuns`), then ours in float32 in each layout."""
    make, size, randomise = CASES[name]
    torch.manual_seed(0)
    reference = make().eval()
    if randomise:
        randomise_torchvision(reference)
    ours = build_from_torchvision(reference.state_dict(), name).eval()
    assert ours.num_classes == 20
    fast_layout = ours.memory_format == torch.channels_last
    ours.use_channels_last(False)  # compare in the reference's memory layout
    x = torch.randn(2, 3, size, size)  # the same pre-processed input for both
    both = _run_both(ours, reference, x)
    expected, cls_logits, bbox_regression = both.expected, both.cls_logits, both.bbox_regression

    # the prior order is the same as torchvision's: no permutation needed
    torch.testing.assert_close(cls_logits, expected["cls_logits"])
    torch.testing.assert_close(bbox_regression, expected["bbox_regression"])
    # both generate the default boxes in float32, by other formulas: a few roundings of values below 2 * size
    # pixels (1e-4 px), far inside 1e-3 px
    torch.testing.assert_close(cxcywh_to_xyxy(ours.priors) * size, both.anchors[0], atol=1e-3, rtol=0)
    assert cls_logits.std() > 0.5  # not degenerate: scores are not all tied
    for a, b in zip(both.got, both.want, strict=True):
        assert a["boxes"].shape[0] > 50
        # the same softmax of the same logits; boxes decoded by other float32 formulas (1e-4 px, as the anchors)
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-6, rtol=0)
        assert torch.equal(a["labels"], b["labels"])
    # float32, in the layout we run and in the reference's, each within float32's error of the float64 outputs
    layouts = [False, True] if fast_layout else [False]
    for channels_last in layouts:
        with torch.no_grad():
            outputs = ours.use_channels_last(channels_last).head_outputs(x)
        for out, exact in zip(outputs, (cls_logits, bbox_regression), strict=True):
            error = float((out.double() - exact).abs().max())
            assert error <= float32_tolerance(ours, exact), (channels_last, error)


def test_conversion_rejects_a_foreign_state_dict() -> None:
    with pytest.raises(KeyError, match="no counterpart"):
        from_torchvision({"roi_heads.box_predictor.cls_score.weight": torch.zeros(1)}, "ssd300_vgg16")
    with pytest.raises(KeyError, match="no torchvision conversion"):
        from_torchvision({}, "ssd512_vgg16")


@pytest.mark.parametrize(
    "name", ["ssd_tiny160", "ssdlite320_mobilenet_v3", pytest.param("ssd300_vgg16", marks=pytest.mark.slow)]
)
@pytest.mark.numeric
def test_to_torchvision_carries_our_weights_and_boxes(name: str) -> None:
    """The benchmarks' reference: torchvision's SSD with our weights gives our head outputs, default boxes and
    detections."""
    from singleshot import build
    from singleshot.convert.torchvision import to_torchvision

    torch.manual_seed(0)
    ours = build(name, num_classes=3).eval()
    if name == "ssdlite320_mobilenet_v3":
        randomise_weights(ours, [*ours.head.cls, *ours.head.reg])
    ours.use_channels_last(False)
    reference = to_torchvision(ours)
    size = ours.preprocessing.image_size
    assert reference.transform.image_mean == list(ours.preprocessing.mean)
    assert (reference.score_thresh, reference.detections_per_img) == (
        ours.postprocess.settings.conf, ours.postprocess.settings.max_det,
    )  # fmt: skip
    x = torch.randn(2, *(3, *size))
    both = _run_both(ours, reference, x)  # float64, post-processing in float32 (see _BothRuns)
    torch.testing.assert_close(both.expected["cls_logits"], both.cls_logits)
    torch.testing.assert_close(both.expected["bbox_regression"], both.bbox_regression)
    torch.testing.assert_close(both.anchors[0] / size[0], cxcywh_to_xyxy(ours.priors))  # float32, the same formulas
    for g, w in zip(both.got, both.want, strict=True):
        assert len(g["scores"]) > 0
        torch.testing.assert_close(g["scores"], w["scores"], atol=1e-6, rtol=0)  # the same softmax, same logits
        torch.testing.assert_close(g["boxes"], w["boxes"], atol=1e-3, rtol=0)  # float32 decoding, 1e-4 px
