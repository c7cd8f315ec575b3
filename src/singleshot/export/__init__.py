"""Export: an SSD as one ONNX file (:func:`export_onnx`), its int8 version (:func:`quantize_int8`), and the
``singleshot export`` command (:func:`singleshot.export.command.run`). The file format is
:mod:`singleshot.onnx_format`; files are run by :class:`singleshot.predict.backends.OnnxBackend` through
:func:`singleshot.load`."""

from singleshot.export.int8 import quantize_int8
from singleshot.export.onnx_file import export_onnx

__all__ = ["export_onnx", "quantize_int8"]
