"""The OpenVINO runtime for exported files: the fp32 file gives ONNX Runtime's detections (boxes within 0.5 px,
scores within 1e-4), the int8 QDQ file runs in int8 and finds what ONNX Runtime's int8 run finds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_same_detections, write_synthetic_images

import singleshot
from singleshot.data.images import read_image
from singleshot.export.int8 import quantize_int8
from singleshot.export.onnx_file import export_onnx
from singleshot.predict.backends import OnnxBackend, OpenVinoBackend
from singleshot.predict.loading import load_backend

pytest.importorskip("openvino", reason="the OpenVINO backend needs the openvino package (a development dependency)")


def _images(folder: Path, size: int = 160) -> list:
    return [read_image(p) for p, _ in write_synthetic_images(folder, 4, (size, size), seed=11)]


@pytest.mark.numeric
def test_fp32_file_gives_onnx_runtimes_detections(trained_tiny: Path, tmp_path: Path) -> None:
    detector = singleshot.load(trained_tiny, device="cpu")
    assert detector.model is not None
    path = export_onnx(detector.model, detector.names, tmp_path / "tiny.onnx")
    openvino, ort = singleshot.load(path, runtime="openvino"), singleshot.load(path)
    assert isinstance(openvino.backend, OpenVinoBackend) and isinstance(ort.backend, OnnxBackend)
    assert (openvino.names, openvino.image_size, openvino.precision) == (ort.names, ort.image_size, "fp32")
    images = _images(tmp_path / "s")
    got, _ = openvino.detect(images)
    want, _ = ort.detect(images)
    assert sum(len(d["scores"]) for d in want) >= 4
    for g, w in zip(got, want, strict=True):
        assert_same_detections(g, w)
    alone, _ = openvino.detect(images[:1])  # batch 1 through the same compiled model
    assert_same_detections(alone[0], got[0])


@pytest.mark.numeric
def test_int8_file_runs_and_finds_what_onnx_runtime_finds(trained_tiny: Path, tmp_path: Path) -> None:
    detector = singleshot.load(trained_tiny, device="cpu")
    assert detector.model is not None
    fp32 = export_onnx(detector.model, detector.names, tmp_path / "tiny.onnx")
    calibration = [im.unsqueeze(0).numpy() for im in _images(tmp_path / "calibration")]
    int8 = quantize_int8(fp32, tmp_path / "tiny-int8.onnx", calibration)
    openvino, ort = singleshot.load(int8, runtime="openvino"), singleshot.load(int8)
    assert openvino.precision == ort.precision == "int8"
    images = _images(tmp_path / "s")
    found = matched = 0
    for g, w in zip(openvino.detect(images)[0], ort.detect(images)[0], strict=True):
        confident = w["scores"] > 0.5
        found += int(confident.sum())
        for box in w["boxes"][confident]:
            matched += int(((g["boxes"] - box).abs().max(dim=1).values < 4).any())
    assert found >= 3 and matched >= 0.9 * found, (matched, found)


def test_bad_runtime_choices(trained_tiny: Path) -> None:
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'; choose one of onnxruntime, openvino"):
        singleshot.load(trained_tiny, runtime="tensorrt")
    with pytest.raises(ValueError, match="OpenVINO runs exported files; write one with singleshot export first"):
        load_backend(trained_tiny, torch.device("cpu"), runtime="openvino")
