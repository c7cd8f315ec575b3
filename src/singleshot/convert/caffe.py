"""The original Caffe SSD models (``.caffemodel``: a binary protobuf ``NetParameter``), read without Caffe and
without executing anything: a small reader of the protobuf wire format takes each layer's name and blobs.

Field numbers follow Caffe's ``caffe.proto``: ``NetParameter.layer`` = 100 (``LayerParameter``: ``name`` = 1,
``blobs`` = 7) and the legacy ``NetParameter.layers`` = 2 (``V1LayerParameter``: ``name`` = 4, ``blobs`` = 6);
``BlobProto``: ``num``/``channels``/``height``/``width`` = 1-4, ``data`` = 5 (packed or not), ``shape`` = 7
(``BlobShape.dim`` = 1). Caffe's SSD takes BGR pixels in 0..255 minus (104, 117, 123); conv1_1's input channels are
reversed so that the converted model takes RGB with our SSD300 preprocessing (RGB minus (123, 117, 104)).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from singleshot.convert.ssd_vgg import (
    HEAD_SOURCES,
    L2NORM,
    VGG_BODY,
    bgr_first_conv,
    extra_layers,
    head_layers,
    model_name,
)

#: The largest file read (the original SSD512 COCO model is about 200 MB).
MAX_BYTES = 2**31


class ProtobufError(ValueError):
    """Not a well-formed protobuf message (truncated or damaged)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError(f"varint longer than 10 bytes at byte {pos}")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of each field of a message: ints for varints and fixed-size fields,
    bytes for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise ProtobufError(f"truncated fixed-size field {number} at byte {pos}")
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ProtobufError(f"field {number} claims {length} bytes at byte {pos}, {len(buf) - pos} remain")
            yield number, wire, buf[pos : pos + length]
            pos += length
        else:
            raise ProtobufError(f"unsupported wire type {wire} (field {number}) at byte {pos}")


def _blob(buf: bytes) -> Tensor:
    """A ``BlobProto`` as a float32 tensor of its shape."""
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    shape: list[int] = []
    chunks: list[np.ndarray] = []
    for number, wire, value in fields(buf):
        if number in legacy and wire == 0:
            legacy[number] = int(value)  # type: ignore[arg-type]  # int or bytes: the wire type tested fixes which
        elif number == 5 and wire == 2:
            # the ignore below: int or bytes: the wire type tested fixes which
            chunks.append(np.frombuffer(value, dtype="<f4"))  # type: ignore[arg-type]
        elif number == 5 and wire == 5:
            # the ignore below: int or bytes: the wire type tested fixes which
            chunks.append(np.array(struct.unpack("<f", value), dtype="<f4"))  # type: ignore[arg-type]
        elif number == 7 and wire == 2:
            for n, w, v in fields(value):  # type: ignore[arg-type]  # int or bytes: the wire type tested fixes which
                if n == 1 and w == 2:  # packed int64 dims
                    dims, pos = v, 0
                    while pos < len(dims):  # type: ignore[arg-type]  # int or bytes: the wire type tested fixes which
                        # the ignore below: int or bytes: the wire type tested fixes which
                        d, pos = _varint(dims, pos)  # type: ignore[arg-type]
                        shape.append(d)
                elif n == 1 and w == 0:
                    shape.append(int(v))  # type: ignore[arg-type]  # int or bytes: the wire type tested fixes which
    data = np.concatenate(chunks) if chunks else np.zeros(0, dtype="<f4")
    shape = shape or [legacy[1], legacy[2], legacy[3], legacy[4]]
    if int(np.prod(shape)) != data.size:
        raise ProtobufError(f"blob of shape {shape} holds {data.size} values")
    return torch.from_numpy(data.astype(np.float32).reshape(shape))


def read_caffemodel(path: str | Path) -> dict[str, list[Tensor]]:
    """Each layer's blobs by layer name (layers without blobs left out).

    Raises:
        FileNotFoundError: no such file.
        ValueError: too large, truncated or not a ``NetParameter`` (the message names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caffemodel not found: {path}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{path}: {size} bytes is larger than any SSD caffemodel ({MAX_BYTES} at most)")
    buf = path.read_bytes()
    layers: dict[str, list[Tensor]] = {}
    try:
        for number, wire, value in fields(buf):
            if wire != 2 or number not in (100, 2):
                continue
            name_field, blobs_field = (1, 7) if number == 100 else (4, 6)
            name, blobs = "", []
            for n, w, v in fields(value):  # type: ignore[arg-type]  # int or bytes: the wire type tested fixes which
                if n == name_field and w == 2:
                    name = v.decode("utf-8", errors="replace")  # type: ignore[union-attr]  # wire type 2: bytes
                elif n == blobs_field and w == 2:
                    blobs.append(_blob(v))  # type: ignore[arg-type]  # int or bytes: the wire type tested fixes which
            if blobs:
                layers[name] = blobs
    except ProtobufError as exc:
        raise ValueError(f"{path}: not a readable caffemodel ({exc})") from exc
    if not layers:
        raise ValueError(f"{path}: no layers with weights: not a Caffe NetParameter")
    return layers


def from_caffe(layers: dict[str, list[Tensor]], source: str = "caffemodel") -> tuple[dict[str, Tensor], str]:
    """Our tensors for the Caffe SSD's layers (see the module docstring); returns them and our model's name.

    Raises:
        ValueError: a layer our model needs is missing (named).
    """
    heads = sum(f"{s}_mbox_loc" in layers for s in HEAD_SOURCES)
    name = model_name(heads)
    convs = VGG_BODY | extra_layers(heads - 2) | head_layers(heads)
    out: dict[str, Tensor] = {}
    for layer, ours in convs.items():
        if layer not in layers:
            raise ValueError(f"{source}: layer '{layer}' is missing; is this the original SSD ({name})?")
        blobs = layers[layer]
        out[f"{ours}.weight"] = blobs[0]
        out[f"{ours}.bias"] = blobs[1].reshape(-1)
    if L2NORM[0] not in layers:
        raise ValueError(f"{source}: layer '{L2NORM[0]}' (the L2Norm scale) is missing")
    out[L2NORM[1]] = layers[L2NORM[0]][0].reshape(-1)
    return bgr_first_conv(out), name
