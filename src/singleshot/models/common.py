"""Assembling an :class:`~singleshot.ssd.SSD` from a backbone: dry run, checks, head."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from singleshot.head import NormLayer, SSDHead
from singleshot.loss import MultiBoxLoss
from singleshot.postprocess import PostProcessor
from singleshot.priors import DefaultBoxConfig
from singleshot.ssd import SSD, Preprocessing


def dry_run(module: nn.Module, image_size: tuple[int, int]) -> list[Tensor]:
    """Outputs of ``module`` for one ``(1, 3, H, W)`` input, computed on the meta device (shapes only, no maths).

    The module's own parameters are untouched; it runs in eval mode so batch-norm statistics are not updated.
    """
    state = {k: torch.empty_like(v, device="meta") for k, v in module.state_dict(keep_vars=True).items()}
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = functional_call(module, state, (torch.empty(1, 3, *image_size, device="meta"),))
    finally:
        module.train(was_training)
    return list(out)


def input_size(image_size: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` from a builder's ``image_size`` argument (an int is a square side; None is ``default``)."""
    if image_size is None:
        return default
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


def assemble(
    name: str,
    backbone: nn.Module,
    default_boxes: DefaultBoxConfig,
    *,
    num_classes: int,
    preprocessing: Preprocessing,
    postprocess: PostProcessor,
    head_norm: NormLayer | None = None,
    channels_last: bool = False,
) -> SSD:
    """Build the head for ``backbone``'s feature maps and put the model together.

    Feature-map sizes and channels come from a dry run of the backbone at ``preprocessing.image_size``. At the
    default boxes' own input size the sizes must equal ``default_boxes.feature_sizes`` (for the paper's models,
    the paper's constants); at another input size the design is rescaled to the dry run's feature maps.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (object classes, background excluded), got {num_classes}")
    try:
        features = dry_run(backbone, preprocessing.image_size)
    except RuntimeError as exc:
        raise ValueError(f"{name} cannot take a {preprocessing.image_size} input: {exc}") from exc
    sizes = tuple((int(f.shape[2]), int(f.shape[3])) for f in features)
    if len(sizes) != default_boxes.num_layers:
        raise ValueError(
            f"{name}: backbone gives {len(sizes)} feature maps, default boxes have {default_boxes.num_layers}"
        )
    if tuple(preprocessing.image_size) != tuple(default_boxes.image_size):
        default_boxes = default_boxes.rescaled(preprocessing.image_size, sizes)
    expected = tuple(tuple(s) for s in default_boxes.feature_sizes)
    if sizes != expected:
        raise ValueError(
            f"{name}: backbone at input {preprocessing.image_size} gives feature maps {list(sizes)}, "
            f"but the default boxes are designed for {list(expected)}"
        )
    head = SSDHead(
        in_channels=[int(f.shape[1]) for f in features],
        boxes_per_location=default_boxes.boxes_per_location(),
        num_logits=num_classes + 1,
        depthwise_norm=head_norm,
    )
    return SSD(
        backbone=backbone,
        head=head,
        default_boxes=default_boxes,
        num_classes=num_classes,
        preprocessing=preprocessing,
        loss=MultiBoxLoss(),
        postprocess=postprocess,
        name=name,
        channels_last=channels_last,
    )
