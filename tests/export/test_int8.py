"""int8 export: a quantised file that still detects, the AP50 check that refuses a bad one, and the float options."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import write_voc_devkit

import singleshot
from singleshot.boxes import box_iou
from singleshot.cli import main
from singleshot.deploy import command as export_run
from singleshot.deploy.command import ExportConfig
from singleshot.deploy.command import run as export_model
from singleshot.export import int8 as int8_module
from singleshot.export.onnx_file import export_onnx
from singleshot.export.onnx_format import INT8_CHECK, onnx_props
from singleshot.models import build


def _devkit(root: Path) -> Path:
    """Synthetic shapes (the trained_tiny classes) as a VOC devkit whose train and val splits are the same 8 images."""
    write_voc_devkit(root, count=8, split="val")
    (root / "ImageSets" / "Main" / "train.txt").write_text((root / "ImageSets" / "Main" / "val.txt").read_text())
    return root


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.numeric
def test_int8_export_detects_and_reports_ap(trained_tiny: Path, tmp_path: Path) -> None:
    """What holds whatever the fixture's weights (its training runs on this CPU's kernels: VOC07 AP50 0.35 to 0.44
    on these 8 images, measured on AVX-512, AVX2, SSE4.1 and one thread): int8 keeps the AP and the confident
    detections."""
    data = _devkit(tmp_path / "voc")
    lines: list[str] = []
    config = ExportConfig(weights=str(trained_tiny), int8=True, data=str(data), calibration=4, force=True,
                          output=str(tmp_path / "q.onnx"))  # fmt: skip
    out = export_model(config, log=lines.append)
    (report,) = [line for line in lines if line.startswith("AP50 (VOC07)")]
    fp32_ap, int8_ap = (float(v) for v in re.search(r"fp32 ([\d.]+), int8 on onnxruntime ([\d.]+)", report).groups())
    # 24 objects (one is difficult): one object found or lost moves AP50 by up to 1/24, 4.2 points; int8 may lose at
    # most about that (measured int8 - fp32: +0.25, -0.06, -0.55, +2.88 points on AVX-512, AVX2, one thread, SSE4.1)
    assert fp32_ap > 20 and int8_ap >= fp32_ap - 5.0, report
    ops = _ops(out)
    assert ops["QuantizeLinear"] > 10 and ops["DequantizeLinear"] > 10  # QDQ around the network's convolutions
    assert ops["Softmax"] == 1 and ops["Exp"] == 1  # scores and box decoding stay float
    detector = singleshot.load(out)
    assert detector.precision == "int8"
    fp32 = singleshot.load(trained_tiny, device="cpu", backend="pytorch", precision="fp32")
    images = [str(p) for p in sorted((data / "JPEGImages").glob("*.jpg"))]
    # Confident fp32 detections (0.4 or more) keep an int8 twin (same class, IoU > 0.8, int8 score above 0.3). As
    # the AP50 margin above allows, int8 may lose one object: on the Xeon's kernels every detection kept its twin
    # (scores moved by at most 0.02), on the AVX-512 EPYC under the AVX2 cap one detection at 0.56 lost it.
    confident, orphans = 0, []
    for a, b in zip(fp32.predict(images, conf=0.4), detector.predict(images, conf=0.3), strict=True):
        twins = (box_iou(a.boxes, b.boxes) > 0.8) & (a.labels[:, None] == b.labels[None, :])
        orphans += [(a.path.name, round(float(s), 3)) for s in a.scores[~twins.any(dim=1)]]
        confident += len(a)
    assert confident >= 3 and len(orphans) <= 1, (confident, orphans)  # measured 7 to 10 confident ones


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
    # fp32 on ONNX Runtime, then int8 on each runtime: a 3-point loss on ONNX Runtime, none on OpenVINO
    scores = {("fp32", "onnxruntime"): 0.60, ("int8", "onnxruntime"): 0.57, ("int8", "openvino"): 0.60}
    monkeypatch.setattr(export_run, "ap50", lambda path, names, data, batch, runtime: scores[path.stem, runtime])
    out = tmp_path / "q.onnx"
    config = ExportConfig(weights=str(trained_tiny), int8=True, data=str(data), calibration=2, output=str(out))
    with pytest.raises(ValueError, match=r"lost 3.00 points of AP50 \(more than --max-drop 1.0\); nothing written"):
        export_model(config, log=lambda _: None)
    assert not out.exists()
    config.force = True
    assert export_model(config, log=lambda _: None) == out and out.is_file()
    check = json.loads(onnx_props(out)[INT8_CHECK])  # what backend="auto" reads: not to run on ONNX Runtime
    assert check["passed"]["onnxruntime"] is False and check["int8_ap50"]["onnxruntime"] == 0.57
    assert check["passed"].get("openvino", True) is True


def test_calibration_survives_activations_too_small_to_histogram(tmp_path: Path) -> None:
    # an untrained SSDLite has such activations; here the first layer outputs 1e-43 everywhere (a float32 denormal):
    # numpy cannot cut its range into percentile calibration's 2048 bins, so min-max ranges are used instead
    torch.manual_seed(0)
    model = build("ssd_tiny160", 3)
    with torch.no_grad():
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        conv.weight.zero_()
        bn.weight.zero_()
        bn.bias.fill_(1e-43)
    fp32 = export_onnx(model, ["a", "b", "c"], tmp_path / "m.onnx")
    images = [np.random.default_rng(k).integers(0, 255, (1, 3, 160, 160), dtype=np.uint8) for k in range(4)]
    with pytest.warns(UserWarning, match="percentile calibration cannot histogram some activations"):
        int8 = int8_module.quantize_int8(fp32, tmp_path / "q.onnx", images, method="percentile")
    detector = singleshot.load(int8)
    assert detector.precision == "int8"
    (result,) = detector.predict(np.ascontiguousarray(images[0][0].transpose(1, 2, 0)), conf=0.0)
    assert torch.isfinite(result.scores).all() and torch.isfinite(result.boxes).all()
