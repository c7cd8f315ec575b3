"""Weight files from the wild, read into our models: format detection, class names, default boxes, safety.

Sources (``singleshot convert SRC``, ``singleshot train --weights SRC``):

* ``torchvision``: a state dict saved from torchvision's ``ssd300_vgg16`` or ``ssdlite320_mobilenet_v3_large``
  (``.pth``), or ``torchvision:ssd300_vgg16`` / ``torchvision:ssdlite320_mobilenet_v3_large`` (torchvision's own
  weights API: its download cache, or the network). COCO's 91 label slots become our 80 classes with their names.
* ``ssd-pytorch``: ssd.pytorch's SSD300 ``.pth`` (VOC: 21 logits), with its clamped default boxes.
* ``caffe``: the original SSD300/SSD512 ``.caffemodel``.
* ``singleshot``: our own ``.safetensors``.

``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)`` only
(:func:`singleshot.convert.reading.read_torch_file`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from torch import Tensor
from torchvision.models import detection

from singleshot.convert import ssd_vgg
from singleshot.convert.caffe import from_caffe, read_caffemodel
from singleshot.convert.reading import download_state_dict, read_torch_file
from singleshot.convert.torchvision import from_torchvision, torchvision_default_boxes
from singleshot.models import SSD300_BOXES, SSD512_BOXES, build
from singleshot.priors import DefaultBoxConfig
from singleshot.ssd import SSD
from singleshot.weights import WeightsMetadata, read_weights

#: The formats this module reads (``singleshot convert --from``).
WEIGHT_FORMATS = ("torchvision", "ssd-pytorch", "caffe", "singleshot")

#: PASCAL VOC's 20 classes in the order of the VOC-trained SSD models (label 1 = aeroplane).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip  # a table of names, a dozen to a line
TORCHVISION_MODELS = {
    "ssd300_vgg16": "SSD300_VGG16_Weights",
    "ssdlite320_mobilenet_v3_large": "SSDLite320_MobileNet_V3_Large_Weights",
}


def detect_format(source: str | Path) -> str:
    """The format of ``source`` from its name, and for ``.pt``/``.pth`` from its keys."""
    text = str(source)
    if text.startswith("torchvision:"):
        return "torchvision"
    suffix = Path(text).suffix.lower()
    if suffix == ".caffemodel":
        return "caffe"
    if suffix == ".safetensors":
        return "singleshot"
    if suffix in (".pt", ".pth"):
        keys = read_torch_file(text).keys()
        if any(k.startswith("vgg.") for k in keys):
            return "ssd-pytorch"
        if any(k.startswith("head.classification_head.") for k in keys):
            return "torchvision"
    raise ValueError(f"{source}: cannot tell its format; give --from {' | '.join(WEIGHT_FORMATS)}")


def _torchvision_api(spec: str) -> dict[str, Tensor]:
    """torchvision's COCO weights of ``torchvision:NAME`` through its weights API (its cache, or a download)."""
    name = spec.removeprefix("torchvision:")
    if name not in TORCHVISION_MODELS:
        known = ", ".join(f"torchvision:{n}" for n in TORCHVISION_MODELS)
        raise ValueError(f"{spec}: torchvision's SSD weights are {known}")
    return download_state_dict(getattr(detection, TORCHVISION_MODELS[name]).COCO_V1, spec)


def _coco_names() -> list[str]:
    return list(detection.SSD300_VGG16_Weights.COCO_V1.meta["categories"])  # 91 slots: background, 80 names, "N/A"


#: The class-score convolution of each head: ``head.cls.K`` (3x3) or ``head.cls.K.1`` (SSDLite's 1x1).
_CLASS_SCORES = re.compile(r"^head\.cls\.\d+\.(1\.)?(weight|bias)$")


def _drop_slots(tensors: dict[str, Tensor], keep: list[int], num_logits: int) -> dict[str, Tensor]:
    """Keep only the logits ``keep`` of each default box in every class-score tensor (``A`` groups of
    ``num_logits`` rows)."""
    out = dict(tensors)
    for key, value in tensors.items():
        if _CLASS_SCORES.match(key):
            rows = [a * num_logits + k for a in range(value.shape[0] // num_logits) for k in keep]
            out[key] = value[rows].contiguous()
    return out


def read_any(
    source: str | Path, fmt: str | None = None, classes: list[str] | None = None
) -> tuple[dict[str, Tensor], list[str] | None, dict[str, object]]:
    """Tensors in our naming, class names (None where the file does not say) and the build arguments of ``source``
    (``name``, ``num_classes``, ``default_boxes``).

    Raises:
        FileNotFoundError, ValueError: see :func:`singleshot.convert.reading.read_torch_file`, the converters, and a
            ``classes`` list whose length differs from the file's classes.
    """
    fmt = fmt or detect_format(source)
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    names: list[str] | None = None
    boxes: DefaultBoxConfig | None = None
    if fmt == "singleshot":
        tensors, raw = read_weights(source)
        meta = WeightsMetadata.from_strings(raw, source)
        names, name = meta.class_names, meta.model
        boxes = DefaultBoxConfig.from_dict(meta.default_boxes) if meta.default_boxes else None
    elif fmt == "torchvision":
        state = _torchvision_api(str(source)) if str(source).startswith("torchvision:") else read_torch_file(source)
        name = "ssd300_vgg16" if "backbone.scale_weight" in state else "ssdlite320_mobilenet_v3"
        tensors, boxes = from_torchvision(state, name), torchvision_default_boxes(name)
        first = [k for k in tensors if k.startswith("head.reg.0") and k.endswith("weight")][-1]
        cls_key = first.replace("head.reg.", "head.cls.")
        num_logits = tensors[cls_key].shape[0] // (tensors[first].shape[0] // 4)
        if num_logits == 91 and classes is None:  # COCO: keep the 80 named slots
            coco = _coco_names()
            keep = [i for i, n in enumerate(coco) if n != "N/A"]
            tensors, names = _drop_slots(tensors, keep, 91), [coco[i] for i in keep[1:]]
    elif fmt == "ssd-pytorch":
        tensors, name = ssd_vgg.from_ssd_pytorch(read_torch_file(source), str(source))
        boxes = dataclasses.replace(SSD300_BOXES if name == "ssd300_vgg16" else SSD512_BOXES, clamp_cxcywh=True)
    else:
        tensors, name = from_caffe(read_caffemodel(source), str(source))
    reg = [k for k in tensors if k.startswith("head.reg.0") and k.endswith("weight")][-1]
    per_box = tensors[reg].shape[0] // 4
    num_classes = tensors[reg.replace("head.reg.", "head.cls.")].shape[0] // per_box - 1
    if classes is not None:
        if len(classes) != num_classes:
            raise ValueError(f"{source}: {len(classes)} class names given for a model of {num_classes} classes")
        names = list(classes)
    elif names is None and num_classes == len(VOC_CLASSES) and fmt in ("ssd-pytorch", "caffe"):
        names = list(VOC_CLASSES)
    return tensors, names, {"name": name, "num_classes": num_classes, "default_boxes": boxes}


def convert_file(
    source: str | Path, fmt: str | None = None, classes: list[str] | None = None
) -> tuple[SSD, list[str], str]:
    """Our model carrying ``source``'s weights, default boxes and class names (``class1`` ... where neither the
    file nor ``classes`` names them), and a line saying what was read."""
    tensors, names, args = read_any(source, fmt, classes)
    extra = {"default_boxes": args["default_boxes"]} if args["default_boxes"] is not None else {}
    # the ignore below: read_any's build arguments are a dict of objects
    model = build(str(args["name"]), num_classes=int(args["num_classes"]), **extra)  # type: ignore[call-overload]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(f"{source}: does not fit {args['name']}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    names = names or [f"class{i + 1}" for i in range(model.num_classes)]
    return model.eval(), names, f"{source} ({fmt or detect_format(source)}) -> {model.name}, {len(names)} classes"
