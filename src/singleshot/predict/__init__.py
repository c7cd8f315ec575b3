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


def load(weights: str | Path, device: str = "auto", *, backend: str = "auto", precision: str = "auto") -> Detector:
    """The model saved in ``weights``, with its class names and preprocessing from the file's metadata:

    * a ``.safetensors`` file of ``singleshot train`` (or any file ``singleshot convert`` reads), or an ``.onnx``
      file of ``singleshot export``;
    * on ``device`` (``auto``: the GPU when there is one, else the CPU);
    * run by ``backend``: ``pytorch``, ``onnxruntime``, ``openvino`` (with the openvino package) or ``auto``, the
      fastest of these on this machine for these weights (a model file is exported to ONNX on the fly), measured
      once and remembered (:mod:`singleshot.predict.auto`; ``detector.choice`` says what it chose and why);
    * at ``precision``: ``fp32``, ``bf16`` (PyTorch autocast, where the CPU has native bf16), ``int8`` (an int8
      ``.onnx``, or the checked one ``singleshot export --int8`` wrote beside the weights) or ``auto``.

    :func:`singleshot.predict.loading.load_backend` decides what runs the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable file, or not singleshot's (nothing in it is executed); a backend or precision
            these weights cannot run at.
        ImportError: a runtime asked for by name that is not installed.
    """
    return Detector.from_weights(weights, device, backend=backend, precision=precision)


__all__ = ["Detector", "Frame", "Result", "SourceReport", "load"]
