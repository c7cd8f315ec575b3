import pytest
import torch
from conftest import toy_model
from torch import nn

from singleshot import SSD, build, list_models
from singleshot.models import SSD300_BOXES, SSD512_BOXES
from singleshot.priors import DefaultBoxConfig


def _targets(size: int) -> list[dict[str, torch.Tensor]]:
    """Objects from 10% to 95% of the image side, so that every feature map gets positives."""
    fractions = [0.1, 0.2, 0.37, 0.54, 0.71, 0.95]
    boxes = torch.tensor([[0.02 * size, 0.02 * size, (0.02 + f) * size, (0.02 + f * 0.9) * size] for f in fractions])
    return [
        {"boxes": boxes, "labels": torch.tensor([1, 2, 3, 1, 2, 3])},
        {"boxes": boxes[:2] + 5, "labels": torch.tensor([2, 1])},
    ]


def test_list_and_build_by_name() -> None:
    assert list_models() == [
        "ssd300_vgg16",
        "ssd512_vgg16",
        "ssd300_vgg16_bn",
        "ssdlite320_mobilenet_v3",
        "ssd_tiny160",
    ]
    with pytest.raises(KeyError, match="Did you mean 'ssd300_vgg16'"):
        build("ssd300_vgg19")


@pytest.mark.parametrize(
    "name",
    [
        "ssdlite320_mobilenet_v3",
        *(pytest.param(n, marks=pytest.mark.slow) for n in ("ssd300_vgg16", "ssd512_vgg16", "ssd300_vgg16_bn")),
    ],
)
def test_one_training_step_reaches_every_parameter(name: str) -> None:
    model = build(name, num_classes=3).train()
    size = model.preprocessing.image_size[0]
    images = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8), torch.rand(3, size, size)]
    losses = model(images, _targets(size))
    assert set(losses) == {"loss_cls", "loss_box"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("name", "num_boxes"),
    [pytest.param("ssd300_vgg16", 8732, marks=pytest.mark.slow), ("ssdlite320_mobilenet_v3", 3234)],
)
def test_inference_contract(name: str, num_boxes: int) -> None:
    model = build(name, num_classes=4).eval()
    assert model.priors.shape == (num_boxes, 4)
    images = [torch.rand(3, 200, 260), torch.randint(0, 256, (3, 90, 70), dtype=torch.uint8)]
    with torch.no_grad():
        cls_logits, bbox = model.head_outputs(model.normalize(images))
        detections = model(images)
    assert cls_logits.shape == (2, num_boxes, 5) and bbox.shape == (2, num_boxes, 4)
    for det, (h, w) in zip(detections, [(200, 260), (90, 70)], strict=True):
        assert set(det) == {"boxes", "scores", "labels"}
        boxes = det["boxes"]
        assert boxes.shape[1] == 4 and boxes.shape[0] == det["scores"].shape[0] == det["labels"].shape[0]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert det["labels"].min() >= 1 and det["labels"].max() <= 4


def test_ssd512_feature_maps_match_the_paper() -> None:
    model = build("ssd512_vgg16")
    assert model.priors.shape == (24564, 4)
    assert model.default_boxes is SSD512_BOXES


def test_builder_checks_default_boxes_against_the_backbone() -> None:
    wrong = DefaultBoxConfig(
        image_size=(300, 300),
        feature_sizes=((37, 37), *SSD300_BOXES.feature_sizes[1:]),
        steps=SSD300_BOXES.steps,
        min_sizes=SSD300_BOXES.min_sizes,
        max_sizes=SSD300_BOXES.max_sizes,
        aspect_ratios=SSD300_BOXES.aspect_ratios,
    )
    with pytest.raises(ValueError, match=r"\(38, 38\).*\(37, 37\)"):
        build("ssd300_vgg16", default_boxes=wrong)


def test_assemble_a_custom_model_from_parts() -> None:
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())

    class TwoMaps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = backbone
            self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            a = self.body(x)
            return [a, self.down(a)]

    boxes = DefaultBoxConfig.from_scales(64, [16, 8], [[2], [2, 3]])
    model = toy_model("tiny", TwoMaps(), boxes)
    assert isinstance(model, SSD)
    assert model.priors.shape[0] == 16 * 16 * 4 + 8 * 8 * 6
    losses = model.train()(
        [torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([2])}]
    )
    assert losses["loss_box"] > 0


@pytest.fixture(scope="module")
def tiny_ssdlite() -> SSD:
    return build("ssdlite320_mobilenet_v3", num_classes=2)


@pytest.mark.parametrize(
    ("images", "targets", "error"),
    [
        ([torch.rand(1, 32, 32)], None, r"images\[0\] has shape \(1, 32, 32\)"),
        ([torch.rand(3, 32, 32).numpy()], None, r"images\[0\] is a ndarray"),
        ([torch.zeros(3, 32, 32, dtype=torch.int32)], None, "dtype torch.int32"),
        ([], None, "non-empty list"),
        (
            [torch.rand(3, 32, 32)],
            [{"boxes": torch.tensor([[5.0, 5.0, 5.0, 9.0]]), "labels": torch.tensor([1])}],
            "zero or negative width",
        ),
        (
            [torch.rand(3, 32, 32)],
            [{"boxes": torch.tensor([[1.0, 1.0, 5.0, 9.0]]), "labels": torch.tensor([3])}],
            r"labels'\] must be in 1\.\.2",
        ),
        (
            [torch.rand(3, 32, 32)],
            [{"boxes": torch.tensor([[1.0, 1.0, float("nan"), 9.0]]), "labels": torch.tensor([1])}],
            "NaN",
        ),
        (
            [torch.rand(3, 32, 32)],
            [{"boxes": torch.tensor([1.0, 1.0, 5.0, 9.0]), "labels": torch.tensor([1])}],
            r"expected \(N, 4\)",
        ),
        ([torch.rand(3, 32, 32)], [], "one target dict per image"),
    ],
)
def test_bad_input_gets_a_clear_error(tiny_ssdlite: SSD, images, targets, error: str) -> None:
    tiny_ssdlite.train(targets is not None)
    with pytest.raises((ValueError, TypeError), match=error):
        tiny_ssdlite(images, targets)
