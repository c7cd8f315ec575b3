"""The OpenVINO runtime for exported files: the fp32 file gives ONNX Runtime's detections (boxes within 0.5 px,
scores within 1e-4), the int8 QDQ file runs in int8 and finds what ONNX Runtime's int8 run finds."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_detections, write_synthetic_images

import singleshot
from singleshot.cli import main
from singleshot.data.images import read_image
from singleshot.export.int8 import quantize_int8
from singleshot.export.onnx_file import export_onnx
from singleshot.export.openvino_file import export_openvino
from singleshot.models import build
from singleshot.predict.backends import OnnxBackend, OpenVinoBackend, _StackT
from singleshot.predict.loading import load_backend

pytest.importorskip("openvino", reason="the OpenVINO backend needs the openvino package (a development dependency)")


def _images(folder: Path, size: int = 160) -> list:
    return [read_image(p) for p, _ in write_synthetic_images(folder, 4, (size, size), seed=11)]


@pytest.mark.numeric
def test_fp32_file_gives_onnx_runtimes_detections(trained_tiny: Path, tmp_path: Path) -> None:
    detector = singleshot.load(trained_tiny, device="cpu", backend="pytorch", precision="fp32")
    assert detector.model is not None
    path = export_onnx(detector.model, detector.names, tmp_path / "tiny.onnx")
    openvino, ort = singleshot.load(path, backend="openvino"), singleshot.load(path, backend="onnxruntime")
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
    detector = singleshot.load(trained_tiny, device="cpu", backend="pytorch", precision="fp32")
    assert detector.model is not None
    fp32 = export_onnx(detector.model, detector.names, tmp_path / "tiny.onnx")
    calibration = [im.unsqueeze(0).numpy() for im in _images(tmp_path / "calibration")]
    int8 = quantize_int8(fp32, tmp_path / "tiny-int8.onnx", calibration)
    openvino, ort = singleshot.load(int8, backend="openvino"), singleshot.load(int8, backend="onnxruntime")
    assert openvino.precision == ort.precision == "int8"
    images = _images(tmp_path / "s")
    found = matched = 0
    for g, w in zip(openvino.detect(images)[0], ort.detect(images)[0], strict=True):
        confident = w["scores"] > 0.5
        found += int(confident.sum())
        for box in w["boxes"][confident]:
            matched += int(((g["boxes"] - box).abs().max(dim=1).values < 4).any())
    assert found >= 3 and matched >= 0.9 * found, (matched, found)


def test_bad_backend_choices_and_a_model_file_on_openvino(trained_tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="unknown backend 'tensorrt'; choose one of auto, pytorch, onnxruntime, openvino"
    ):
        singleshot.load(trained_tiny, device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="int8 and the other runtimes run on the CPU"):
        load_backend(trained_tiny, torch.device("cpu"), backend="openvino", precision="bf16")
    # a model file on OpenVINO: exported on the fly, the same detections as PyTorch's
    runner, choice = load_backend(trained_tiny, torch.device("cpu"), backend="openvino", precision="fp32")
    assert isinstance(runner, OpenVinoBackend) and choice is None
    images = _images(tmp_path / "s")
    got, _ = singleshot.predict.Detector(runner, runner.class_names).detect(images)
    want, _ = singleshot.load(trained_tiny, device="cpu", backend="pytorch", precision="fp32").detect(images)
    for g, w in zip(got, want, strict=True):
        assert_same_detections(g, w)


@pytest.mark.numeric
def test_export_format_openvino_writes_an_ir_that_runs_alone(trained_tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "ir" / "tiny.xml"
    assert main(["export", "--weights", str(trained_tiny), "--format", "openvino", "--output", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".bin").is_file()
    ir = singleshot.load(out)  # auto: an IR has one runtime, so nothing is measured
    assert isinstance(ir.backend, OpenVinoBackend) and ir.choice is not None and not ir.choice.times_ms
    reference = singleshot.load(trained_tiny, device="cpu", backend="pytorch", precision="fp32")
    assert (ir.names, ir.image_size, ir.precision, ir.name) == (reference.names, (160, 160), "fp32", "ssd_tiny160")
    assert ir.postprocess.settings == reference.postprocess.settings  # the metadata travelled in the IR
    images = _images(tmp_path / "s")
    for g, w in zip(ir.detect(images)[0], reference.detect(images)[0], strict=True):
        assert_same_detections(g, w)
    with pytest.raises(ValueError, match="runs on onnxruntime or openvino, at fp32"):
        singleshot.load(out, precision="int8")
    with pytest.raises(ValueError, match=r"an OpenVINO IR is named \*.xml"):
        export_openvino(tmp_path / "x.onnx", tmp_path / "x.ir")


def _signal_stack() -> tuple[int, int, int]:
    stack = _StackT()
    assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack)) == 0
    return stack.ss_sp or 0, stack.ss_flags, stack.ss_size


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the signal stack through Linux's libc")
def test_compiling_leaves_the_threads_signal_stack_as_it_was(tmp_path: Path) -> None:
    # OpenVINO's compile_model installs one and leaves it behind (backends.kept_signal_stack): Python's signal
    # handlers then wrote into memory OpenVINO had freed, and the test suite died with SIGSEGV at random places
    path = export_onnx(build("ssd_tiny160", 3), ["a", "b", "c"], tmp_path / "m.onnx")
    before = _signal_stack()
    backends = [OpenVinoBackend(path, 1) for _ in range(3)]
    assert _signal_stack() == before
    del backends[0]  # freed out of order
    backends[0].infer(np.zeros((1, 3, 160, 160), dtype=np.uint8))
    assert _signal_stack() == before
