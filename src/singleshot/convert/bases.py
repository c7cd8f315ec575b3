"""ImageNet backbones as the start of a training run (``singleshot train --base``): VGG16 for the VGG16 SSDs
(torchvision's, or the original work's reduced-fc Caffe model), MobileNetV3-Large for SSDLite."""

from __future__ import annotations

from torch import Tensor
from torchvision.models import MobileNet_V3_Large_Weights, VGG16_BN_Weights, VGG16_Weights

from singleshot.convert.caffe import read_caffemodel
from singleshot.convert.mobilenet import mobilenet_base
from singleshot.convert.reading import download_state_dict, read_torch_file
from singleshot.convert.ssd_vgg import (
    IMAGENET_NORMALISATION,
    VGG_BODY,
    Normalisation,
    bgr_first_conv,
    fold_input_normalisation,
    vgg16_base,
)
from singleshot.ssd import SSD


def imagenet_backbone(source: str, model: SSD) -> tuple[dict[str, Tensor], str]:
    """``singleshot train --base``: ImageNet weights for ``model``'s backbone, and a line saying what loads.

    VGG16 SSDs: :func:`imagenet_base`. SSDLite: torchvision's ``mobilenet_v3_large``
    (a ``.pth`` path, or ``torchvision`` for its download), every tensor that fits the reduced-tail backbone
    (:mod:`singleshot.convert.mobilenet`).
    """
    own = model.state_dict()
    backbone = sum(k.startswith("backbone.") for k in own)
    if model.name.startswith("ssdlite"):
        if source == "torchvision":
            state = download_state_dict(MobileNet_V3_Large_Weights.IMAGENET1K_V1, "--base torchvision")
        else:
            state = read_torch_file(source)
        tensors = mobilenet_base(state, own, source)
        note = "the reduced last stage (halved channels) and the extras start fresh"
        return tensors, f"backbone from {source}: {len(tensors)}/{backbone} tensors of ImageNet MobileNetV3 ({note})"
    p = model.preprocessing
    tensors = imagenet_base(source, model.name, (p.mean, p.std))
    return tensors, f"backbone from {source}: {len(tensors)}/{backbone} tensors of ImageNet VGG16 (fc6/fc7 subsampled)"


def imagenet_base(source: str, model_name: str, normalisation: Normalisation) -> dict[str, Tensor]:
    """``singleshot train --base``: our VGG16 layers (conv1_1 .. conv5_3, fc6, fc7) from an ImageNet VGG16:

    * torchvision's ``vgg16`` (a ``.pth`` state dict, or ``torchvision`` for its weights API): fc6/fc7 subsampled
      (:func:`vgg16_base`), trained on ImageNet's normalisation;
    * the original work's "reduced fc" VGG16 (``VGG_ILSVRC_16_layers_fc_reduced.caffemodel``: fc6/fc7 already
      1024-channel convolutions), trained on BGR pixels minus (104, 117, 123): conv1_1's channels are reversed.

    conv1_1 is then folded onto the model's normalisation ``(mean, std)`` (:func:`fold_input_normalisation`).

    Raises:
        ValueError: a model without a VGG16 base, or a file that is not one of the above.
    """
    if model_name not in ("ssd300_vgg16", "ssd512_vgg16", "ssd300_vgg16_bn"):
        raise ValueError(f"--base (an ImageNet VGG16) fits the VGG16 SSDs, not {model_name}")
    batch_norm = model_name.endswith("_bn")
    if source.endswith(".caffemodel"):
        layers = read_caffemodel(source)
        missing = [name for name in VGG_BODY if name not in layers]
        if missing:
            raise ValueError(f"{source}: not the reduced-fc VGG16 (no layer {', '.join(missing[:3])})")
        tensors = {}
        for name, ours in VGG_BODY.items():
            tensors[f"{ours}.weight"], tensors[f"{ours}.bias"] = layers[name][0], layers[name][1].reshape(-1)
        trained = ((123 / 255, 117 / 255, 104 / 255), (1 / 255, 1 / 255, 1 / 255))  # after the BGR->RGB flip
        return fold_input_normalisation(bgr_first_conv(tensors), trained, normalisation)
    if source == "torchvision":
        weights = VGG16_BN_Weights.IMAGENET1K_V1 if batch_norm else VGG16_Weights.IMAGENET1K_V1
        state = download_state_dict(weights, "--base torchvision")
    else:
        state = read_torch_file(source)
    return fold_input_normalisation(vgg16_base(state, source, batch_norm), IMAGENET_NORMALISATION, normalisation)
