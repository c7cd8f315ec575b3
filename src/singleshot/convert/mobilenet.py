"""An ImageNet MobileNetV3-Large (torchvision's ``mobilenet_v3_large``) as the base of our SSDLite backbone.

Our :class:`~singleshot.models.mobilenet.MobileNetV3Backbone` is cut from torchvision's ``features``: ``body.0`` is
``features[:c5]`` plus C5's 1x1 expansion, ``body.1`` is the rest of C5 and the later blocks. The key map below is
derived from that cut (:func:`~singleshot.models.mobilenet.stride32_start`). Our SSDLite halves the last stage
("reduced tail", as torchvision's COCO SSDLite), so those ImageNet tensors do not fit and start fresh; every
tensor whose shape matches loads.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor
from torchvision.models import mobilenet_v3_large

from singleshot.models.mobilenet import NORM, stride32_start


def our_key(key: str, c5: int) -> str | None:
    """Our backbone key of torchvision's ``features.*`` key ``key`` (None: not a feature layer)."""
    parts = key.split(".")
    if parts[0] != "features":
        return None
    block, rest = int(parts[1]), parts[2:]
    if block < c5:
        return ".".join(["backbone.body.0", str(block), *rest])
    if block == c5:
        inner = int(rest[1])  # features.c5.block.J.*
        if inner == 0:
            return ".".join(["backbone.body.0", str(c5), *rest[2:]])
        return ".".join(["backbone.body.1.0", str(inner), *rest[2:]])  # a slice of ``block`` keeps its names
    return ".".join(["backbone.body.1", str(block - c5), *rest])


def mobilenet_base(state_dict: Mapping[str, Tensor], own: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """The tensors of torchvision's ImageNet ``mobilenet_v3_large`` state dict that fit our backbone ``own``.

    Raises:
        ValueError: not a torchvision MobileNetV3-Large (no ``features.*`` key maps).
    """
    c5 = stride32_start(mobilenet_v3_large(weights=None, norm_layer=NORM).features)
    out: dict[str, Tensor] = {}
    mapped = 0
    for key, value in state_dict.items():
        ours = our_key(key, c5)
        if ours is None:
            continue
        mapped += ours in own
        if ours in own and own[ours].shape == value.shape:
            out[ours] = value
    if mapped == 0:
        raise ValueError(f"{source}: not torchvision's mobilenet_v3_large (no features.* layer fits SSDLite)")
    return out
