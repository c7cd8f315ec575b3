"""int8 static quantisation of an exported model with ONNX Runtime (QDQ format).

Weights are signed int8 per output channel, activations signed int8 per tensor with ranges calibrated on real
images. Only the network is quantised: the normalisation in front and the softmax and box decoding behind it
(and NMS) stay in float, since a score threshold of 0.01 needs more than 8 bits. Optionally the first
convolution (it sees raw pixels) and the prediction heads (their outputs are the scores and offsets) stay float
too. int8 pays on CPUs with VNNI or AMX-INT8 (:mod:`singleshot.cpu`); elsewhere it can be slower than fp32.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from singleshot.export.onnx_format import INPUT, read_metadata
from singleshot.folders import atomic_write

#: How ``singleshot export --int8`` may set activation ranges (ONNX Runtime's calibration methods), and the
#: default: on the BCCD recipe's weights percentile lost nothing (+0.21 AP50 points) where minmax lost 1.7.
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
DEFAULT_CALIBRATION = "percentile"


class _Reader:
    """ONNX Runtime's calibration-data reader over ``(1, 3, H, W)`` uint8 arrays."""

    def __init__(self, images: Iterable[np.ndarray]) -> None:
        self._images: Iterator[np.ndarray] = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._images, None)
        return None if image is None else {INPUT: image}


def float_nodes(model: onnx.ModelProto, first_conv: bool, heads: bool) -> list[str]:
    """Names of the nodes to leave in float: everything outside the network (normalisation, softmax, decoding,
    NMS: the exporter names the network's nodes ``/backbone/...`` and ``/head/...``), and optionally the first
    convolution and the prediction heads."""
    names = []
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for node in model.graph.node:
        head = node.name.startswith("/head/")
        outside = not (head or node.name.startswith("/backbone/"))
        if outside or (heads and head) or (first_conv and convs and node.name == convs[0].name):
            names.append(node.name)
    return names


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    images: Iterable[np.ndarray],
    method: str = DEFAULT_CALIBRATION,
    float_first_conv: bool = False,
    float_heads: bool = False,
) -> Path:
    """Write the int8 QDQ version of the exported model ``fp32_path`` to ``out_path`` (atomically).

    Args:
        images: calibration batches, ``(1, 3, H, W)`` uint8 RGB at the model's input size.
        method: ``minmax``, ``entropy`` or ``percentile`` (99.999%) activation ranges.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    images = list(images)  # read again if the histogram methods fail (below)
    source = onnx.load(str(fp32_path))
    props = {p.key: p.value for p in source.metadata_props}
    read_metadata(props, fp32_path)  # a singleshot export, or a clear error
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        exclude = float_nodes(onnx.load(str(prepared)), float_first_conv, float_heads)

        def write(target: str, calibration: str) -> None:
            quantize_static(
                str(prepared), target, _Reader(images), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[calibration]),
                # Histograms are updated every 4 images: ONNX Runtime otherwise keeps every intermediate tensor of
                # every calibration image in memory (SSD300: over 100 MB per image). Not for minmax: ONNX Runtime
                # 1.32's min-max calibrator drops what it collected at each such flush instead of keeping the ranges.
                extra_options={} if calibration == "minmax" else {"CalibMaxIntermediateOutputs": 4},
            )  # fmt: skip  # keywords grouped by line
            model = onnx.load(target)
            del model.metadata_props[:]
            for key, value in (props | {"precision": "int8"}).items():
                model.metadata_props.add(key=key, value=value)
            onnx.save(model, target)

        try:
            atomic_write(out_path, lambda target: write(target, method))
        except ValueError as exc:
            # numpy's histogram of an activation whose range is below float32's resolution (constant, or nearly
            # zero, as in an untrained model) cannot have 2048 bins; min-max ranges need no histogram
            if "finite-sized bins" not in str(exc) or method == "minmax":
                raise
            warnings.warn(
                f"{fp32_path}: {method} calibration cannot histogram some activations (constant or nearly zero, as "
                "in an untrained model); calibrated with minmax instead",
                stacklevel=2,
            )
            atomic_write(out_path, lambda target: write(target, "minmax"))
    return out_path
