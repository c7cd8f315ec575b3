"""What a model is: input size, parameters, multiply-adds, feature maps and default boxes (paper Fig. 2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from singleshot.config import Config, setting
from singleshot.models import build, list_models
from singleshot.models.common import dry_run
from singleshot.ssd import SSD


@dataclass(frozen=True)
class LayerSummary:
    feature_size: tuple[int, int]
    channels: int
    boxes_per_location: int
    boxes: int
    min_size: float
    max_size: float | None


@dataclass(frozen=True)
class ModelSummary:
    name: str
    input_size: tuple[int, int]
    num_classes: int
    parameters: int
    multiply_adds: int
    layers: tuple[LayerSummary, ...]

    @property
    def num_boxes(self) -> int:
        return sum(layer.boxes for layer in self.layers)


class _HeadOutputs(nn.Module):
    """Adapter so that a dry run goes through the backbone and the head, returning the feature maps too."""

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> list[Tensor]:
        features = self.model.backbone(x)
        self.model.head(features)
        return features


def summarize(model: SSD) -> ModelSummary:
    """Count parameters and, with a shape-only dry run, the multiply-adds of one forward pass (batch 1).

    Multiply-adds are those of convolutions and linear layers (``out_elements * in_channels/groups * k*k``);
    element-wise work (ReLU, batch norm, L2Norm) is not counted, as is customary.
    """
    macs = 0

    def count(module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        features = dry_run(_HeadOutputs(model), model.preprocessing.image_size)
    finally:
        for h in hooks:
            h.remove()
    boxes = model.default_boxes
    layers = tuple(
        LayerSummary(
            feature_size=(int(f.shape[2]), int(f.shape[3])),
            channels=int(f.shape[1]),
            boxes_per_location=a,
            boxes=n,
            min_size=boxes.min_sizes[k],
            max_size=boxes.max_sizes[k],
        )
        for k, (f, a, n) in enumerate(zip(features, boxes.boxes_per_location(), boxes.boxes_per_layer(), strict=True))
    )
    return ModelSummary(
        name=model.name,
        input_size=model.preprocessing.image_size,
        num_classes=model.num_classes,
        parameters=sum(p.numel() for p in model.parameters()),
        multiply_adds=macs,
        layers=layers,
    )


def format_summary(s: ModelSummary) -> str:
    """A readable table: one line for the model, one per feature map."""
    h, w = s.input_size
    lines = [
        f"{s.name}  input {h}x{w}  classes {s.num_classes}+background  "
        f"params {s.parameters / 1e6:.2f} M  multiply-adds {s.multiply_adds / 1e9:.2f} G  "
        f"default boxes {s.num_boxes}",
        f"  {'layer':>5}  {'feature map':>11}  {'channels':>8}  {'boxes/cell':>10}  {'boxes':>6}  "
        f"{'min size':>8}  {'max size':>8}",
    ]
    for k, layer in enumerate(s.layers):
        fh, fw = layer.feature_size
        max_size = "-" if layer.max_size is None else f"{layer.max_size:.1f}"
        lines.append(
            f"  {k:>5}  {f'{fh}x{fw}':>11}  {layer.channels:>8}  {layer.boxes_per_location:>10}  "
            f"{layer.boxes:>6}  {layer.min_size:>8.1f}  {max_size:>8}"
        )
    lines.append(f"  {'total':>5}  {'':>11}  {'':>8}  {'':>10}  {s.num_boxes:>6}")
    return "\n".join(lines)


@dataclass
class ModelsConfig(Config):
    """What ``singleshot models`` shows."""

    model: list[str] = setting([], "models to show; none shows all", positional=True)
    num_classes: int = setting(20, "object classes, background excluded (20: VOC)")


def run(config: ModelsConfig, *, log: Callable[[str], None] = print) -> list[ModelSummary]:
    """``singleshot models``: the summary of each model of ``config`` (all by default), logged one after another."""
    config.validate()
    summaries = [summarize(build(name, num_classes=config.num_classes)) for name in config.model or list_models()]
    log("\n\n".join(format_summary(s) for s in summaries))
    return summaries
