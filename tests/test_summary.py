import pytest
import torch
from conftest import toy_model
from torch import nn

from singleshot.cli import main
from singleshot.models import build
from singleshot.priors import DefaultBoxConfig
from singleshot.summary import summarize


def test_multiply_adds_and_parameters_by_hand() -> None:
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1))

    class One(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = backbone

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [self.conv(x)]

    boxes = DefaultBoxConfig.from_scales(32, [8], [[2]])  # 4 boxes per cell
    model = toy_model("one", One(), boxes)
    s = summarize(model)
    backbone_macs = 8 * 8 * 8 * 3 * 9
    head_macs = 8 * 8 * (4 * 3) * 8 * 9 + 8 * 8 * (4 * 4) * 8 * 9
    assert s.multiply_adds == backbone_macs + head_macs
    assert s.parameters == (8 * 27 + 8) + (12 * 72 + 12) + (16 * 72 + 16)
    assert s.num_boxes == 256 and s.layers[0].feature_size == (8, 8) and s.layers[0].channels == 8


def test_ssd300_summary_and_weights_untouched() -> None:
    model = build("ssd300_vgg16")
    before = model.backbone.l2norm.weight.clone()
    s = summarize(model)
    assert s.num_boxes == 8732
    assert [layer.feature_size for layer in s.layers] == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    assert [layer.channels for layer in s.layers] == [512, 1024, 512, 256, 256, 256]
    assert 30e9 < s.multiply_adds < 33e9  # VGG16-SSD300 is ~31 G multiply-adds
    assert torch.equal(model.backbone.l2norm.weight, before)


def test_cli_models_table(capsys) -> None:
    assert main(["models", "ssdlite320_mobilenet_v3", "--num-classes", "3"]) == 0
    out = capsys.readouterr().out
    assert "ssdlite320_mobilenet_v3  input 320x320  classes 3+background" in out
    assert "default boxes 3234" in out
    assert out.count("\n") == 9  # header, column names, 6 layers, total


def test_cli_unknown_model(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["models", "ssd300"])
    assert exc.value.code == 2
    assert "unknown model 'ssd300'" in capsys.readouterr().err
