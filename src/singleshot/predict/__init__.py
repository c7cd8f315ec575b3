"""Prediction: :func:`load` weights as a :class:`Detector`, then ``detector.predict(source)`` on images,
folders, globs, videos or in-memory images, getting one :class:`Result` per image or video frame.

``singleshot predict`` (:mod:`singleshot.predict.command`) writes annotated images and videos, ``predictions.json``
and optional YOLO labels and crops. This package never imports :mod:`singleshot.engine`.
"""

from __future__ import annotations

from pathlib import Path

from singleshot.predict.detector import Detector
from singleshot.predict.result import Result
from singleshot.predict.sources import Frame, SourceReport


def load(weights: str | Path, device: str = "auto", precision: str = "fp32", runtime: str = "onnxruntime") -> Detector:
    """The model saved in ``weights``, with its class names and preprocessing from the file's metadata
    (:func:`singleshot.predict.loading.load_backend` decides what runs it):

    * a ``.safetensors`` file of ``singleshot train`` (or any file ``singleshot convert`` reads), run by PyTorch on
      ``device`` (``auto``: the GPU when there is one, else the CPU) at ``precision`` (``fp32``, ``bf16`` or
      ``auto``: see :class:`Detector`);
    * an ``.onnx`` file of ``singleshot export``, run by ONNX Runtime (``runtime="onnxruntime"``) or OpenVINO
      (``runtime="openvino"``, with the openvino package) on the CPU.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable file, or not singleshot's (nothing in it is executed).
        ImportError: an ``.onnx`` file on a machine without the onnxruntime package.
    """
    return Detector.from_weights(weights, device, precision=precision, runtime=runtime)


__all__ = ["Detector", "Frame", "Result", "SourceReport", "load"]
