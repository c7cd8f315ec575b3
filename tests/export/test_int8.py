"""int8 export: a quantised file that still detects, the AP50 check that refuses a bad one, and the float options."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
from conftest import write_voc_devkit

import singleshot
from singleshot.cli import main
from singleshot.config import ExportConfig
from singleshot.export import int8 as int8_module
from singleshot.export import run as export_run
from singleshot.export.run import export_model


def _devkit(root: Path) -> Path:
    """Synthetic shapes (the trained_tiny classes) as a VOC devkit whose train and val splits are the same 8 images."""
    write_voc_devkit(root, count=8, split="val")
    (root / "ImageSets" / "Main" / "train.txt").write_text((root / "ImageSets" / "Main" / "val.txt").read_text())
    return root


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_int8_export_detects_and_reports_ap(trained_tiny: Path, tmp_path: Path) -> None:
    data = _devkit(tmp_path / "voc")
    lines: list[str] = []
    config = ExportConfig(weights=str(trained_tiny), int8=True, data=str(data), calibration=4, force=True,
                          output=str(tmp_path / "q.onnx"))  # fmt: skip
    out = export_model(config, log=lines.append)
    assert any(line.startswith("AP50 (VOC07)") and "int8" in line and "fp32" in line for line in lines)
    ops = _ops(out)
    assert ops["QuantizeLinear"] > 10 and ops["DequantizeLinear"] > 10  # QDQ around the network's convolutions
    assert ops["Softmax"] == 1 and ops["Exp"] == 1  # scores and box decoding stay float
    detector = singleshot.load(out)
    assert detector.precision == "int8"
    fp32 = singleshot.load(trained_tiny, device="cpu")
    image = fp32.predict(str(data / "JPEGImages" / "img01.jpg"), conf=0.3)[0]
    quantised = detector.predict(str(data / "JPEGImages" / "img01.jpg"), conf=0.3)[0]
    assert len(image) > 0 and sorted(image.labels.tolist()) == sorted(quantised.labels.tolist())


def test_float_nodes_keep_the_first_conv_and_heads(trained_tiny: Path, tmp_path: Path) -> None:
    fp32 = tmp_path / "f.onnx"
    assert main(["export", "--weights", str(trained_tiny), "--output", str(fp32)]) == 0
    model = onnx.load(str(fp32))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    plain = set(int8_module.float_nodes(model, first_conv=False, heads=False))
    assert not plain & set(convs)  # every convolution is quantised by default
    assert {"/Softmax", "/Exp", "/Cast"} <= {n for n in plain if n.count("/") == 1}
    both = set(int8_module.float_nodes(model, first_conv=True, heads=True))
    assert convs[0] in both and all((c in both) == (c == convs[0] or c.startswith("/head/")) for c in convs)


def test_refuses_an_int8_model_that_lost_too_much(
    trained_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _devkit(tmp_path / "voc")
    scores = iter([0.60, 0.57, 0.60, 0.57])  # fp32 then int8, twice: a 3-point loss
    monkeypatch.setattr(export_run, "ap50", lambda *args: next(scores))
    out = tmp_path / "q.onnx"
    config = ExportConfig(weights=str(trained_tiny), int8=True, data=str(data), calibration=2, output=str(out))
    with pytest.raises(ValueError, match=r"lost 3.00 points of AP50 \(more than --max-drop 1.0\); .*q.onnx not"):
        export_model(config, log=lambda _: None)
    assert not out.exists()
    config.force = True
    assert export_model(config, log=lambda _: None) == out and out.is_file()
