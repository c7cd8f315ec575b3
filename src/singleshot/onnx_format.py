"""The contract of singleshot's ONNX files, defined once: written by :mod:`singleshot.export`, read by
:mod:`singleshot.predict`.

* input ``images``: ``(B, 3, H, W)`` uint8 RGB at the model's input size (batch dynamic);
* graph ``decoded``: outputs ``scores (B, P, C + 1)`` (softmax, background at 0) and ``boxes (B, P, 4)`` (xyxy,
  normalised to [0, 1]); graph ``nms``: output ``detections (B, max_det, 6)`` rows ``(x1, y1, x2, y2, score,
  label)``, boxes normalised, sorted by score, padded with zero rows;
* ``metadata_props``: the :class:`~singleshot.weights.WeightsMetadata` strings (model name, classes, input size,
  mean/std, post-processing settings) plus ``graph`` (decoded | nms) and ``precision`` (fp32 | int8).
"""

from __future__ import annotations

from pathlib import Path

from singleshot.weights import WeightsMetadata

INPUT = "images"
OUTPUTS = {"decoded": ["scores", "boxes"], "nms": ["detections"]}
PRECISIONS = ("fp32", "int8")


def metadata_props(meta: WeightsMetadata, graph: str, precision: str) -> dict[str, str]:
    """The ``metadata_props`` of an exported file."""
    if graph not in OUTPUTS or precision not in PRECISIONS:
        raise ValueError(f"graph must be one of {list(OUTPUTS)} and precision one of {list(PRECISIONS)}")
    if meta.postprocess is None:
        raise ValueError("exported models must carry their post-processing settings")
    return meta.to_strings() | {"graph": graph, "precision": precision}


def read_metadata(props: dict[str, str], source: str | Path) -> tuple[WeightsMetadata, str, str]:
    """``(metadata, graph, precision)`` of an exported file's ``metadata_props``.

    Raises:
        ValueError: not written by singleshot (the message names the missing keys).
    """
    meta = WeightsMetadata.from_strings(props, source)
    missing = [k for k in ("postprocess", "graph", "precision") if k not in props]
    if missing:
        raise ValueError(f"{source}: not a singleshot ONNX export (missing metadata {', '.join(missing)})")
    if props["graph"] not in OUTPUTS or props["precision"] not in PRECISIONS:
        raise ValueError(f"{source}: unknown graph {props['graph']!r} or precision {props['precision']!r}")
    return meta, props["graph"], props["precision"]
