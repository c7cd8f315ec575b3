"""SSDLite320 on MobileNetV3-Large, for the CPU (MobileNetV2 paper section 6.3; MobileNetV3 paper section 6.1.2).

The first feature map is the expansion layer of the first stride-32 block (stride 16, 20x20 at 320 input), the
second is the last backbone layer (stride 32); four extra blocks (1x1, 3x3 depthwise stride 2, 1x1) follow.
Predictors are depthwise-separable. The backbone's last stage is halved ("reduced tail", MobileNetV3 Table 6),
as in torchvision's COCO-trained SSDLite.
"""

from __future__ import annotations

from functools import partial
from itertools import pairwise

from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.ops import Conv2dNormActivation

from singleshot.models.common import assemble, input_size
from singleshot.postprocess import PostProcessor, PostSettings
from singleshot.priors import DefaultBoxConfig
from singleshot.ssd import SSD, Preprocessing

#: Batch norm as torchvision's SSDLite recipe (TF-style epsilon and momentum).
NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)

#: Six feature maps with ratios {2, 3}, scales 0.2 .. 0.95 by the paper's rule and 1.0 after the last
#: (torchvision's SSDLite320 boxes): 3234 default boxes.
SSDLITE320_BOXES = DefaultBoxConfig.from_scales(
    320, [20, 10, 5, 3, 2, 1], [[2, 3]] * 6, s_min=0.2, s_max=0.95, last_scale=1.0, clamp_wh=True
)
SSDLITE_EXTRA_CHANNELS = (512, 256, 256, 128)


def _strided(block: nn.Module) -> bool:
    return isinstance(block, InvertedResidual) and any(
        isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in block.modules()
    )


def stride32_start(features: nn.Sequential) -> int:
    """Index of the first block of MobileNetV3's stride-32 stage (C5) in torchvision's ``features``."""
    return max(i for i, b in enumerate(features) if _strided(b))


def _extra_block(in_c: int, out_c: int) -> nn.Sequential:
    mid = out_c // 2
    return nn.Sequential(
        Conv2dNormActivation(in_c, mid, kernel_size=1, norm_layer=NORM, activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, mid, 3, stride=2, groups=mid, norm_layer=NORM, activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, out_c, kernel_size=1, norm_layer=NORM, activation_layer=nn.ReLU6),
    )


class MobileNetV3Backbone(nn.Module):
    """MobileNetV3-Large feature extractor for SSDLite: two backbone maps then four extra blocks."""

    def __init__(self, reduced_tail: bool = True) -> None:
        super().__init__()
        features = mobilenet_v3_large(weights=None, norm_layer=NORM, reduced_tail=reduced_tail).features
        c5 = stride32_start(features)  # first block of the stride-32 stage
        self.body = nn.ModuleList(
            [
                nn.Sequential(*features[:c5], features[c5].block[0]),  # .. C5's 1x1 expansion (stride 16)
                nn.Sequential(features[c5].block[1:], *features[c5 + 1 :]),  # C5 depthwise .. last conv
            ]
        )
        channels = [features[-1].out_channels, *SSDLITE_EXTRA_CHANNELS]
        self.extras = nn.ModuleList(_extra_block(a, b) for a, b in pairwise(channels))
        for m in self.extras.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.03)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for stage in [*self.body, *self.extras]:
            x = stage(x)
            out.append(x)
        return out


def ssdlite320_mobilenet_v3(
    num_classes: int = 20,
    default_boxes: DefaultBoxConfig = SSDLITE320_BOXES,
    postprocess: PostProcessor | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> SSD:
    """SSDLite320 on MobileNetV3-Large: 320x320 input, 3234 default boxes, inputs scaled to [-1, 1]."""
    return assemble(
        name="ssdlite320_mobilenet_v3",
        backbone=MobileNetV3Backbone(reduced_tail=True),
        default_boxes=default_boxes,
        num_classes=num_classes,
        preprocessing=Preprocessing(input_size(image_size, default_boxes.image_size), (0.5,) * 3, (0.5,) * 3),
        # torchvision's SSDLite settings: score 0.001, NMS 0.55, 300 candidates per class, 300 per image.
        postprocess=postprocess or PostProcessor(PostSettings(conf=0.001, iou=0.55, max_det=300, candidates=300)),
        head_norm=NORM,
        # Measured on a 2-core AVX2 CPU: channels-last makes a training step 1.35-1.55x faster here
        # (depthwise convolutions), while it slows VGG16's dense convolutions down (0.8x).
        channels_last=True,
    )
