"""Importing weights from torchvision's SSD models.

torchvision's ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large`` have the same layers as ours under other
names, and the same prediction order (cells row-major, then default boxes in the order of
:mod:`singleshot.priors`), so conversion is a renaming of state-dict keys. Two documented differences:

* torchvision counts background in ``num_classes`` (COCO: 91); ours counts object classes only (90).
* torchvision's SSD300 uses its own COCO default-box scales (0.07 .. 1.05) and clamps box widths and heights to
  the image: :func:`torchvision_default_boxes` gives that design, to pass to our builder.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping

from torch import Tensor, nn
from torchvision.models.detection import ssd as torchvision_ssd
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

from singleshot.models import SSD300_BOXES, SSDLITE320_BOXES, build
from singleshot.models.common import dry_run
from singleshot.priors import DefaultBoxConfig
from singleshot.ssd import SSD

Rule = tuple[str, str | Callable[[re.Match[str]], str]]

_HEAD_RULES: list[Rule] = [
    (r"^head\.classification_head\.module_list\.", "head.cls."),
    (r"^head\.regression_head\.module_list\.", "head.reg."),
]
#: (pattern, replacement) applied in order; the first that matches a key renames it.
_RULES: dict[str, list[Rule]] = {
    "ssd300_vgg16": [
        (r"^backbone\.features\.", "backbone.conv4."),
        (r"^backbone\.scale_weight$", "backbone.l2norm.weight"),
        (r"^backbone\.extra\.0\.7\.", "backbone.fc."),  # torchvision nests fc6/fc7 inside extra.0
        (r"^backbone\.extra\.0\.", "backbone.conv5."),
        # fc6/fc7 are torchvision's extra.0 but a module of their own here, so extra.k is our extras.(k-1).
        (r"^backbone\.extra\.(\d+)\.", lambda m: f"backbone.extras.{int(m.group(1)) - 1}."),
        *_HEAD_RULES,
    ],
    "ssdlite320_mobilenet_v3": [
        (r"^backbone\.features\.", "backbone.body."),
        (r"^backbone\.extra\.", "backbone.extras."),
        *_HEAD_RULES,
    ],
}
_ALIASES = {"ssdlite320_mobilenet_v3_large": "ssdlite320_mobilenet_v3"}


def _canonical(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in _RULES:
        raise KeyError(f"no torchvision conversion for '{name}'; supported: {', '.join(_RULES)}")
    return name


def _rename(key: str, rules: list[Rule]) -> str | None:
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    return None


def from_torchvision(state_dict: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    """Convert a torchvision SSD state dict into one for our model ``name``.

    Args:
        state_dict: of ``torchvision.models.detection.ssd300_vgg16`` or ``ssdlite320_mobilenet_v3_large``.
        name: ``"ssd300_vgg16"`` or ``"ssdlite320_mobilenet_v3"`` (torchvision's name is accepted too).

    Raises:
        KeyError: a key that has no place in our model (wrong ``name``, or not a torchvision SSD).
    """
    rules = _RULES[_canonical(name)]
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = _rename(key, rules)
        if new is None:
            raise KeyError(f"torchvision key '{key}' has no counterpart in {name}: is this a torchvision {name}?")
        out[new] = value
    return out


class _FeatureDict(nn.Module):
    """Our backbone as torchvision's SSD wants it: feature maps in an ordered dict."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.body = backbone

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict((str(i), f) for i, f in enumerate(self.body(x)))


def _default_box_generator(boxes: DefaultBoxConfig) -> DefaultBoxGenerator:
    """torchvision's generator for our design (exact where each layer's max size is the next one's min size, as
    in the paper's SSD300/SSD512; otherwise the second square box's size differs slightly)."""
    side = boxes.image_size[0]
    scales = [m / side for m in boxes.min_sizes] + [(boxes.max_sizes[-1] or boxes.min_sizes[-1]) / side]
    steps = [round(s) for s in boxes.steps] if boxes.steps else None
    ratios = [list(r) for r in boxes.aspect_ratios]
    return DefaultBoxGenerator(ratios, scales=scales, steps=steps, clip=boxes.clip or boxes.clamp_wh)


def to_torchvision(model: SSD) -> nn.Module:
    """torchvision's SSD carrying ``model``'s weights, default boxes, normalisation and post-processing settings:
    the reference that benchmarks run beside ours, on the same weights.

    ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3`` are torchvision's own builders (the inverse of
    :func:`from_torchvision`); other models (no torchvision counterpart) are torchvision's generic ``SSD`` class
    around a copy of our backbone, with torchvision's head, anchors, transform and post-processing.
    """
    num_classes = model.num_classes + 1  # torchvision counts background
    state = model.state_dict()
    if model.name in _RULES:
        make = ssd300_vgg16 if model.name == "ssd300_vgg16" else ssdlite320_mobilenet_v3_large
        reference = make(weights=None, weights_backbone=None, num_classes=num_classes)
        rules = _RULES[model.name]
        converted = {k: state[_rename(k, rules) or k] for k in reference.state_dict()}
    else:
        channels = [int(f.shape[1]) for f in dry_run(model.backbone, model.preprocessing.image_size)]
        reference = torchvision_ssd.SSD(
            _FeatureDict(copy.deepcopy(model.backbone)),
            _default_box_generator(model.default_boxes),
            model.preprocessing.image_size,
            num_classes,
            head=torchvision_ssd.SSDHead(channels, model.default_boxes.boxes_per_location(), num_classes),
        )
        converted = {}
        for key in reference.state_dict():
            ours = key.replace("backbone.body.", "backbone.", 1)
            converted[key] = state[_rename(ours, _HEAD_RULES) or ours]
    reference.load_state_dict(converted, strict=True)
    reference.anchor_generator = _default_box_generator(model.default_boxes)
    reference.transform.image_mean = list(model.preprocessing.mean)
    reference.transform.image_std = list(model.preprocessing.std)
    post = model.postprocess.settings
    reference.score_thresh, reference.nms_thresh = post.conf, post.iou
    reference.topk_candidates, reference.detections_per_img = post.candidates, post.max_det
    return reference.eval()


def torchvision_default_boxes(name: str) -> DefaultBoxConfig:
    """The default boxes torchvision's model ``name`` was trained with."""
    name = _canonical(name)
    if name == "ssdlite320_mobilenet_v3":
        return SSDLITE320_BOXES
    scales = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)  # torchvision's COCO SSD300
    return DefaultBoxConfig(
        image_size=SSD300_BOXES.image_size,
        feature_sizes=SSD300_BOXES.feature_sizes,
        steps=SSD300_BOXES.steps,
        min_sizes=tuple(s * 300 for s in scales[:-1]),
        max_sizes=tuple(s * 300 for s in scales[1:]),
        aspect_ratios=SSD300_BOXES.aspect_ratios,
        clamp_wh=True,
    )


def _num_logits(state_dict: Mapping[str, Tensor], boxes: DefaultBoxConfig) -> int:
    first = sorted(k for k in state_dict if k.startswith("head.cls.0.") and k.endswith("weight"))[-1]
    return int(state_dict[first].shape[0]) // boxes.boxes_per_location()[0]


def build_from_torchvision(state_dict: Mapping[str, Tensor], name: str) -> SSD:
    """Our model carrying torchvision's weights, default boxes and post-processing settings.

    The number of classes is read from the weights (torchvision's ``num_classes`` minus background). The
    post-processing settings are our builders' own: torchvision's SSD300 uses the original's, and our SSDLite
    builder uses torchvision's SSDLite settings (a parity test checks both).
    """
    name = _canonical(name)
    converted = from_torchvision(state_dict, name)
    boxes = torchvision_default_boxes(name)
    model = build(
        name,
        num_classes=_num_logits(converted, boxes) - 1,
        default_boxes=boxes,
    )
    model.load_state_dict(converted, strict=True)
    return model
