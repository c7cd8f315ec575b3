"""Checkpoints and weight files: written atomically, read without executing code.

* ``last.pt`` (training state: model, optimizer, scheduler, scaler, EMA, position, RNG states, config) is
  written with ``torch.save`` to a temporary file in the same folder, flushed to disk, then renamed over the old
  one, so a kill at any moment leaves either the old or the new checkpoint, never a torn one. It is read with
  ``torch.load(weights_only=True)``.
* Weights for users are ``.safetensors`` with the model name, class names and preprocessing in the metadata,
  enough to rebuild the model with nothing else (:func:`load_model`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from singleshot import __version__
from singleshot.models import build
from singleshot.ssd import SSD


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the finished file onto ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> None:
    """Atomically ``torch.save`` a training state (plain containers, tensors and numbers only)."""
    atomic_write(path, lambda tmp: torch.save(dict(state), tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training state without executing code from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which and why
        raise ValueError(f"{path}: not a readable singleshot checkpoint ({exc})") from exc


def weights_metadata(model: SSD, class_names: Sequence[str]) -> dict[str, str]:
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model of {model.num_classes} classes")
    p = model.preprocessing
    return {
        "format": "singleshot",
        "singleshot_version": __version__,
        "model": model.name,
        "num_classes": str(model.num_classes),
        "classes": json.dumps(list(class_names)),
        "image_size": json.dumps(list(p.image_size)),
        "mean": json.dumps(list(p.mean)),
        "std": json.dumps(list(p.std)),
    }


def save_weights(
    model: SSD, path: str | Path, class_names: Sequence[str], state_dict: Mapping[str, Tensor] | None = None
) -> None:
    """Write ``model``'s weights (or ``state_dict``, e.g. its EMA) as ``.safetensors`` with metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in (state_dict or model.state_dict()).items()}
    meta = weights_metadata(model, class_names)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .safetensors file ({exc})") from exc
    return tensors, meta


def load_model(path: str | Path) -> tuple[SSD, list[str]]:
    """Rebuild the model saved by :func:`save_weights`; returns it (in eval mode) and its class names."""
    tensors, meta = read_weights(path)
    if meta.get("format") != "singleshot":
        raise ValueError(f"{path}: no singleshot metadata (model name, classes); was it saved by singleshot?")
    image_size = json.loads(meta["image_size"])
    model = build(meta["model"], num_classes=int(meta["num_classes"]), image_size=tuple(image_size))
    model.load_state_dict(tensors)
    return model.eval(), json.loads(meta["classes"])
