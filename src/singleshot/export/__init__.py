"""Export: an SSD as one ONNX file (:func:`export_onnx`; the file's contract is :mod:`singleshot.export.onnx_format`),
its int8 version (:func:`quantize_int8`). Every tracing workaround lives here (:mod:`singleshot.export.graph`).

This room writes files and checks nothing: it sits below :mod:`singleshot.predict`, which runs the files (and exports
a model's weights on the fly for ``backend="auto"``); the ``singleshot export`` command, with the int8 accuracy
check, is :mod:`singleshot.deploy.command`."""

from singleshot.export.int8 import quantize_int8
from singleshot.export.onnx_file import export_onnx

__all__ = ["export_onnx", "quantize_int8"]
