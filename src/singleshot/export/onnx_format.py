"""The contract of singleshot's ONNX files, defined once: written by :mod:`singleshot.export` (this room), read by
:mod:`singleshot.predict`.

* input ``images``: ``(B, 3, H, W)`` uint8 RGB at the model's input size (batch dynamic);
* graph ``decoded``: outputs ``scores (B, P, C + 1)`` (softmax, background at 0) and ``boxes (B, P, 4)`` (xyxy,
  normalised to [0, 1]); graph ``nms``: output ``detections (B, max_det, 6)`` rows ``(x1, y1, x2, y2, score,
  label)``, boxes normalised, sorted by score, padded with zero rows;
* ``metadata_props``: the :class:`~singleshot.weights.WeightsMetadata` strings (model name, classes, input size,
  mean/std, post-processing settings) plus ``graph`` (decoded | nms) and ``precision`` (fp32 | int8); optionally
  ``source_sha256`` and ``int8_check`` (:data:`SOURCE_SHA256`, :data:`INT8_CHECK`).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from singleshot.weights import WeightsMetadata

INPUT = "images"
OUTPUTS = {"decoded": ["scores", "boxes"], "nms": ["detections"]}
PRECISIONS = ("fp32", "int8")
#: Optional metadata: the SHA-256 of the weights file the model was exported from, and for an int8 file of
#: ``singleshot export --int8`` its accuracy check (JSON: AP50 before and after, the allowed drop, ``passed``).
#: ``backend="auto"`` runs an int8 file beside the weights only when both say it comes from them and passed.
SOURCE_SHA256 = "source_sha256"
INT8_CHECK = "int8_check"


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


def onnx_props(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (its weights are not read).

    Raises:
        ValueError: not a readable ONNX file (the message names it).
    """
    try:
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable ONNX model ({exc})") from exc
