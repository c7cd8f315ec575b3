"""The paper's SSD300 and SSD512 on VGG16 (paper Fig. 2 and section 3, "Base network").

VGG16 (torchvision's layer layout) is changed as the paper says: pool3 rounds up (38x38 conv4_3 at 300 input),
pool5 becomes 3x3 stride 1, fc6 and fc7 become convolutions (fc6: 3x3, dilation 6, 1024 channels; fc7: 1x1),
conv4_3 is L2-normalised with a learnable per-channel scale initialised to 20 (ParseNet), and extra layers of
decreasing size follow fc7.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from singleshot.models.common import assemble, input_size
from singleshot.postprocess import PostProcessor
from singleshot.priors import DefaultBoxConfig
from singleshot.ssd import SSD, Preprocessing

#: Caffe VGG16 was trained on 0..255 BGR pixels minus (104, 117, 123); here the same as RGB [0, 1] mean/std.
CAFFE_MEAN = (123.0 / 255.0, 117.0 / 255.0, 104.0 / 255.0)
CAFFE_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)
#: torchvision's ImageNet statistics, for the batch-norm variant.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ExtraLayer:
    """One extra feature layer: a 1x1 convolution to ``mid`` channels, then ``kernel``x``kernel`` to ``out``."""

    mid: int
    out: int
    kernel: int
    stride: int
    padding: int


#: Paper Fig. 2 (conv8_2 .. conv11_2 in the paper's numbering; conv6_2 .. conv9_2 in the original prototxt).
SSD300_EXTRAS = (
    ExtraLayer(256, 512, 3, 2, 1),
    ExtraLayer(128, 256, 3, 2, 1),
    ExtraLayer(128, 256, 3, 1, 0),
    ExtraLayer(128, 256, 3, 1, 0),
)
#: SSD512 (paper section 3.6, footnote: "conv12_2"), as in the original prototxt: 64, 32, 16, 8, 4, 2, 1 maps.
SSD512_EXTRAS = (
    ExtraLayer(256, 512, 3, 2, 1),
    ExtraLayer(128, 256, 3, 2, 1),
    ExtraLayer(128, 256, 3, 2, 1),
    ExtraLayer(128, 256, 3, 2, 1),
    ExtraLayer(128, 256, 4, 1, 1),
)

#: The original implementation's SSD300 boxes for VOC (ssd_pascal.py): 8732 default boxes.
SSD300_BOXES = DefaultBoxConfig(
    image_size=(300, 300),
    feature_sizes=((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)),
    steps=(8, 16, 32, 64, 100, 300),
    min_sizes=(30, 60, 111, 162, 213, 264),
    max_sizes=(60, 111, 162, 213, 264, 315),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
)
#: The original implementation's SSD512 boxes for VOC (ssd_pascal_512.py, sizes truncated to integers): 24564.
SSD512_BOXES = DefaultBoxConfig(
    image_size=(512, 512),
    feature_sizes=((64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)),
    steps=(8, 16, 32, 64, 128, 256, 512),
    min_sizes=(35, 76, 153, 230, 307, 384, 460),
    max_sizes=(76, 153, 230, 307, 384, 460, 537),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnable per-channel scale (ParseNet; paper section 3.1)."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * self.weight.view(1, -1, 1, 1)


def _conv_block(in_c: int, out_c: int, batch_norm: bool, **conv: int) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, bias=not batch_norm, **conv)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_c))
    layers.append(nn.ReLU(inplace=True))
    return layers


class VGGBackbone(nn.Module):
    """VGG16 reduced as in the paper, returning conv4_3 (normalised), fc7 and the extra feature maps.

    Args:
        extras: the extra layers after fc7.
        batch_norm: VGG16-BN, with batch norm also in fc6, fc7 and the extras (for training from scratch).
    """

    def __init__(self, extras: Sequence[ExtraLayer], batch_norm: bool = False) -> None:
        super().__init__()
        # torchvision's VGG16 layer list ("D"), without its 120M-parameter classifier.
        features = make_layers(cfgs["D"], batch_norm=batch_norm)
        for m in features.modules():
            if isinstance(m, nn.Conv2d):  # torchvision's VGG initialisation, for training from scratch
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        features[pools[2]].ceil_mode = True  # pool3 rounds up: 75 -> 38 at 300 input (Caffe's pooling)
        self.conv4 = features[: pools[3]]  # conv1_1 .. relu4_3
        self.l2norm = L2Norm(512, scale=20.0)
        self.conv5 = nn.Sequential(*features[pools[3] : pools[4]])  # pool4 .. relu5_3
        self.fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5: 3x3 s1 (paper section 3)
            *_conv_block(512, 1024, batch_norm, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            *_conv_block(1024, 1024, batch_norm, kernel_size=1),  # fc7
        )
        layers = []
        in_c = 1024
        for e in extras:
            layers.append(
                nn.Sequential(
                    *_conv_block(in_c, e.mid, batch_norm, kernel_size=1),
                    *_conv_block(e.mid, e.out, batch_norm, kernel_size=e.kernel, stride=e.stride, padding=e.padding),
                )
            )
            in_c = e.out
        self.extras = nn.ModuleList(layers)
        for m in [*self.fc.modules(), *self.extras.modules()]:
            if isinstance(m, nn.Conv2d):  # the original initialises new layers with Xavier
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv4(x)
        out = [self.l2norm(x)]
        x = self.fc(self.conv5(x))
        out.append(x)
        for layer in self.extras:
            x = layer(x)
            out.append(x)
        return out


def _vgg_ssd(
    name: str,
    extras: Sequence[ExtraLayer],
    boxes: DefaultBoxConfig,
    *,
    num_classes: int,
    batch_norm: bool,
    postprocess: PostProcessor | None,
    image_size: int | tuple[int, int] | None,
) -> SSD:
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if batch_norm else (CAFFE_MEAN, CAFFE_STD)
    return assemble(
        name=name,
        backbone=VGGBackbone(extras, batch_norm=batch_norm),
        default_boxes=boxes,
        num_classes=num_classes,
        preprocessing=Preprocessing(input_size(image_size, boxes.image_size), mean, std),
        postprocess=postprocess or PostProcessor(),  # the original's test settings (PostProcessor's defaults)
    )


def ssd300_vgg16(
    num_classes: int = 20,
    default_boxes: DefaultBoxConfig = SSD300_BOXES,
    postprocess: PostProcessor | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> SSD:
    """SSD300 on VGG16 (the paper's main model): 300x300 input, 8732 default boxes."""
    return _vgg_ssd(
        "ssd300_vgg16",
        SSD300_EXTRAS,
        default_boxes,
        num_classes=num_classes,
        batch_norm=False,
        postprocess=postprocess,
        image_size=image_size,
    )


def ssd512_vgg16(
    num_classes: int = 20,
    default_boxes: DefaultBoxConfig = SSD512_BOXES,
    postprocess: PostProcessor | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> SSD:
    """SSD512 on VGG16: 512x512 input, 24564 default boxes."""
    return _vgg_ssd(
        "ssd512_vgg16",
        SSD512_EXTRAS,
        default_boxes,
        num_classes=num_classes,
        batch_norm=False,
        postprocess=postprocess,
        image_size=image_size,
    )


def ssd300_vgg16_bn(
    num_classes: int = 20,
    default_boxes: DefaultBoxConfig = SSD300_BOXES,
    postprocess: PostProcessor | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> SSD:
    """SSD300 on VGG16 with batch norm throughout, for training from scratch; boxes as SSD300."""
    return _vgg_ssd(
        "ssd300_vgg16_bn",
        SSD300_EXTRAS,
        default_boxes,
        num_classes=num_classes,
        batch_norm=True,
        postprocess=postprocess,
        image_size=image_size,
    )
