"""Model builders, found by name through the plain dict :data:`MODELS`.

``num_classes`` is always the number of object classes ``C``; heads predict ``C + 1`` logits (background 0).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from singleshot.models.mobilenet import SSDLITE320_BOXES, ssdlite320_mobilenet_v3
from singleshot.models.tiny import ssd_tiny160
from singleshot.models.vgg import SSD300_BOXES, SSD512_BOXES, ssd300_vgg16, ssd300_vgg16_bn, ssd512_vgg16
from singleshot.ssd import SSD

MODELS: dict[str, Callable[..., SSD]] = {
    "ssd300_vgg16": ssd300_vgg16,
    "ssd512_vgg16": ssd512_vgg16,
    "ssd300_vgg16_bn": ssd300_vgg16_bn,
    "ssdlite320_mobilenet_v3": ssdlite320_mobilenet_v3,
    "ssd_tiny160": ssd_tiny160,
}


def list_models() -> list[str]:
    """Names accepted by :func:`build`."""
    return list(MODELS)


def build(name: str, num_classes: int = 20, **kwargs: object) -> SSD:
    """Build the model ``name`` for ``num_classes`` object classes (keyword arguments go to its builder)."""
    if name not in MODELS:
        close = difflib.get_close_matches(name, MODELS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown model '{name}'.{hint} Available: {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, **kwargs)


__all__ = [
    "MODELS",
    "SSD300_BOXES",
    "SSD512_BOXES",
    "SSDLITE320_BOXES",
    "build",
    "list_models",
    "ssd300_vgg16",
    "ssd300_vgg16_bn",
    "ssd512_vgg16",
    "ssd_tiny160",
    "ssdlite320_mobilenet_v3",
]
