"""Weights from other programs, converted into singleshot's models.

* :mod:`singleshot.convert.torchvision`: torchvision's ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large``.
"""

from singleshot.convert.torchvision import build_from_torchvision, from_torchvision, torchvision_default_boxes

__all__ = ["build_from_torchvision", "from_torchvision", "torchvision_default_boxes"]
