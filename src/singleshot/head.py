"""SSD prediction heads (paper section 2.1, "Convolutional predictors for detection").

For a feature map of ``c`` channels with ``A`` default boxes per cell, a small convolution predicts ``A * K``
class logits and ``A * 4`` offsets per cell. Outputs are laid out per cell (row-major) and, inside a cell, per
default box: the order of :mod:`singleshot.priors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]


def _conv3x3(in_channels: int, out_channels: int) -> nn.Module:
    """The paper's predictor: a plain 3x3 convolution."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def _depthwise_separable(in_channels: int, out_channels: int, norm_layer: NormLayer) -> nn.Module:
    """SSDLite's predictor (MobileNetV2 paper, section 6.3): 3x3 depthwise + norm + ReLU6, then 1x1."""
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            norm_layer(in_channels),
            nn.ReLU6(inplace=True),
        ),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def _flatten(x: Tensor, columns: int) -> Tensor:
    """``(B, A * K, H, W)`` -> ``(B, H * W * A, K)``: cells row-major, then boxes of a cell."""
    b, _, h, w = x.shape
    return x.view(b, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, columns)


class SSDHead(nn.Module):
    """Class and box predictors for every feature map.

    Args:
        in_channels: channels of each feature map.
        boxes_per_location: default boxes per cell of each feature map.
        num_logits: classes including background (``C + 1``).
        depthwise_norm: ``None`` for the paper's 3x3 convolutions; a norm-layer factory for SSDLite's
            depthwise-separable predictors.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        boxes_per_location: Sequence[int],
        num_logits: int,
        depthwise_norm: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(boxes_per_location):
            raise ValueError(f"{len(in_channels)} feature maps but default boxes for {len(boxes_per_location)} layers")

        def predictor(c: int, out: int) -> nn.Module:
            return _conv3x3(c, out) if depthwise_norm is None else _depthwise_separable(c, out, depthwise_norm)

        self.num_logits = num_logits
        self.cls = nn.ModuleList(
            predictor(c, a * num_logits) for c, a in zip(in_channels, boxes_per_location, strict=True)
        )
        self.reg = nn.ModuleList(predictor(c, a * 4) for c, a in zip(in_channels, boxes_per_location, strict=True))
        self.reset_parameters(depthwise=depthwise_norm is not None)

    def reset_parameters(self, depthwise: bool) -> None:
        """Xavier (the original's initialiser) for 3x3 heads; N(0, 0.03) for SSDLite heads; zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if depthwise:
                    nn.init.normal_(m.weight, std=0.03)
                else:
                    nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Head outputs of ``B`` images.

        Args:
            features: feature maps ``(B, c_k, H_k, W_k)``.

        Returns:
            ``cls_logits (B, P, C + 1)`` and ``bbox_regression (B, P, 4)``.
        """
        logits = [_flatten(m(f), self.num_logits) for m, f in zip(self.cls, features, strict=True)]
        offsets = [_flatten(m(f), 4) for m, f in zip(self.reg, features, strict=True)]
        return torch.cat(logits, dim=1), torch.cat(offsets, dim=1)
