"""Writing an SSD as one ONNX file with its metadata, and reading that metadata back.

The file holds normalisation, backbone, heads, softmax and box decoding (default boxes as constants), and with
``nms=True`` class-wise NMS too (:mod:`singleshot.export.graph`); its inputs, outputs and metadata follow
:mod:`singleshot.export.onnx_format`, so that :func:`singleshot.load` can use it alone.

Exporter: PyTorch's TorchScript-based ``torch.onnx.export(..., dynamo=False)``. The dynamo exporter needs the extra
``onnxscript`` package and gains nothing here: the graph is a plain feed-forward network (the only data-dependent
step, NMS, is an explicit ONNX operator), which tracing captures exactly; the tests check each exported model
against PyTorch at two batch sizes.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import onnx
import torch

from singleshot.export.graph import DecodedGraph, DetectionsGraph
from singleshot.export.onnx_format import INPUT, OUTPUTS, SOURCE_SHA256, metadata_props
from singleshot.folders import atomic_write
from singleshot.ssd import SSD
from singleshot.weights import WeightsMetadata

#: ONNX operator set written (ONNX Runtime >= 1.12 runs it; NonMaxSuppression exists since 10).
OPSET = 17


def export_onnx(
    model: SSD,
    class_names: list[str],
    path: str | Path,
    nms: bool = False,
    opset: int = OPSET,
    source_sha256: str | None = None,
) -> Path:
    """Write ``model`` to ``path`` (parent folders created; written atomically) and check it with ``onnx.checker``;
    ``source_sha256``: the SHA-256 of the weights file the model was read from, kept in the metadata.

    Input ``images``: ``(B, 3, H, W)`` uint8 RGB at the model's input size (batch dynamic). Outputs: ``scores (B,
    P, C + 1)`` and ``boxes (B, P, 4)`` (xyxy in [0, 1]), or with ``nms`` ``detections (B, max_det, 6)``.
    """
    path = Path(path)
    model = copy.deepcopy(model).eval().cpu().use_channels_last(False)  # the caller's model is left as it was
    kind = "nms" if nms else "decoded"
    graph = DetectionsGraph(model) if nms else DecodedGraph(model)
    example = torch.zeros(2, 3, *model.preprocessing.image_size, dtype=torch.uint8)
    outputs = OUTPUTS[kind]

    def write(tmp: str) -> None:
        with warnings.catch_warnings():  # tracer warnings about Python scalars in shape arithmetic
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (example,), tmp, input_names=[INPUT], output_names=outputs, opset_version=opset,
                dynamic_axes={name: {0: "batch"} for name in [INPUT, *outputs]}, dynamo=False,
            )  # fmt: skip  # keywords grouped by line
        proto = onnx.load(tmp)
        set_metadata(proto, WeightsMetadata.of(model, class_names), kind, "fp32")
        if source_sha256 is not None:
            proto.metadata_props.add(key=SOURCE_SHA256, value=source_sha256)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)

    atomic_write(path, write)
    return path


def set_metadata(proto: onnx.ModelProto, meta: WeightsMetadata, graph: str, precision: str) -> None:
    """Store ``meta``, the ``graph`` kind and the ``precision`` in ``proto`` (:mod:`singleshot.export.onnx_format`)."""
    del proto.metadata_props[:]
    for key, value in metadata_props(meta, graph, precision).items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "singleshot"


def add_metadata(path: str | Path, props: dict[str, str]) -> None:
    """Add (or replace) ``props`` in the ``metadata_props`` of the ONNX file ``path``, rewritten atomically."""
    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        proto.metadata_props.add(key=key, value=value)
    atomic_write(Path(path), lambda tmp: onnx.save(proto, tmp))
