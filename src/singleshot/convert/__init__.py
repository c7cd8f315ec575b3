"""Weights from other programs, converted into singleshot's models.

* :mod:`singleshot.convert.files`: any supported file (format detection, class names, default boxes): the entry
  point of ``singleshot convert`` and of ``--weights`` for files that are not ours;
* :mod:`singleshot.convert.torchvision`: torchvision's ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large`` (and
  :func:`to_torchvision`, our weights in torchvision's model: the benchmarks' reference);
* :mod:`singleshot.convert.ssd_vgg`: the VGG16 SSD's layers by role, ssd.pytorch's SSD, ImageNet VGG16 bases;
* :mod:`singleshot.convert.caffe`: the original Caffe SSD's ``.caffemodel`` files;
* :mod:`singleshot.convert.mobilenet`: an ImageNet MobileNetV3-Large as SSDLite's base.
"""

from singleshot.convert.torchvision import (
    build_from_torchvision,
    from_torchvision,
    to_torchvision,
    torchvision_default_boxes,
)

__all__ = ["build_from_torchvision", "from_torchvision", "to_torchvision", "torchvision_default_boxes"]
