"""Prediction: :func:`load` weights as a :class:`Detector`, then ``detector.predict(source)`` on images,
folders, globs, videos or in-memory images, getting one :class:`Result` per image or video frame.

``singleshot predict`` (:mod:`singleshot.predict.run`) writes annotated images and videos, ``predictions.json``
and optional YOLO labels and crops. This package never imports :mod:`singleshot.engine`.
"""

from __future__ import annotations

from pathlib import Path

from singleshot.predict.detector import Detector
from singleshot.predict.result import Result
from singleshot.predict.sources import Frame, SourceReport


def load(weights: str | Path, device: str = "auto") -> Detector:
    """The model saved in ``weights`` (a ``.safetensors`` file of ``singleshot train``), its class names and
    preprocessing from the file's metadata, on ``device`` (``auto``: the GPU when there is one, else the CPU).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable ``.safetensors`` file, or not singleshot's (nothing in it is executed).
    """
    return Detector.from_weights(weights, device)


__all__ = ["Detector", "Frame", "Result", "SourceReport", "load"]
