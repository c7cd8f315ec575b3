"""An exported ONNX file as an OpenVINO IR (``.xml`` + ``.bin``), carrying the same metadata.

The IR is OpenVINO's own conversion of the ONNX file (``openvino.convert_model``), weights kept in fp32 (an int8 QDQ
file becomes an IR that OpenVINO runs in int8). Our metadata (:mod:`singleshot.export.onnx_format`) is stored in the
IR's ``rt_info`` under ``singleshot``, so :class:`~singleshot.predict.backends.OpenVinoBackend` reads an IR alone.
Writing it needs the optional ``openvino`` package (``pip install openvino``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

#: The ``rt_info`` section of an IR that holds our metadata.
RT_INFO = "singleshot"


def export_openvino(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Write the OpenVINO IR of the exported file ``onnx_path`` to ``xml_path`` and the ``.bin`` beside it (the
    ``.bin`` replaced first, then the ``.xml``, each in one rename). Returns ``xml_path``.

    Raises:
        ImportError: no openvino package.
        ValueError: ``xml_path`` does not end in ``.xml``.
    """
    try:  # imported here: openvino is optional (pip install openvino)
        import openvino
    except ImportError as exc:
        raise ImportError("the OpenVINO IR needs the openvino package: pip install openvino") from exc
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise ValueError(f"{xml_path}: an OpenVINO IR is named *.xml (its weights go to the .bin beside it)")
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    model = openvino.convert_model(str(onnx_path))
    for key, value in props.items():
        model.set_rt_info(value, [RT_INFO, key])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=f".{xml_path.stem}.") as tmp:
        staged = Path(tmp) / xml_path.name
        openvino.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(staged, xml_path)
    return xml_path


def read_openvino_props(model: object) -> dict[str, str]:
    """Our metadata from an ``openvino.Model`` read from an IR of :func:`export_openvino` (empty if it has none)."""
    if not model.has_rt_info([RT_INFO]):  # type: ignore[attr-defined]  # an openvino.Model (optional package)
        return {}
    section = model.get_rt_info([RT_INFO]).astype(dict)  # type: ignore[attr-defined]
    return {key: value.astype(str) for key, value in section.items()}
