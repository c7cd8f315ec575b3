"""The user weight file: ``.safetensors`` with the model name, class names and preprocessing in its metadata,
enough to rebuild the model with nothing else (:func:`load_model`). Read without executing code, written
atomically (:func:`atomic_write`: a kill at any moment leaves the old file or the new one, never a torn one).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from singleshot import __version__
from singleshot.models import build
from singleshot.postprocess import PostProcessor
from singleshot.ssd import SSD

#: The ``format`` value in the metadata of every weight file singleshot writes.
FORMAT = "singleshot"


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the finished file onto ``path`` in one rename (same folder, flushed
    to disk first)."""
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


@dataclass(frozen=True)
class WeightsMetadata:
    """What a weight file says about its model (safetensors metadata is a ``str -> str`` map: lists are JSON)."""

    model: str
    class_names: list[str]
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    version: str = __version__
    #: The model's post-processing settings (:meth:`PostProcessor.settings`); exported models carry them, since
    #: no builder is called when they are loaded. None: the builder's own.
    postprocess: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def of(cls, model: SSD, class_names: Sequence[str]) -> WeightsMetadata:
        if len(class_names) != model.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model of {model.num_classes} classes")
        p = model.preprocessing
        return cls(
            model.name, list(class_names), tuple(p.image_size), tuple(p.mean), tuple(p.std),
            postprocess=model.postprocess.settings(),
        )  # fmt: skip

    def to_strings(self) -> dict[str, str]:
        extra = {} if self.postprocess is None else {"postprocess": json.dumps(self.postprocess)}
        return extra | {
            "format": FORMAT,
            "singleshot_version": self.version,
            "model": self.model,
            "num_classes": str(self.num_classes),
            "classes": json.dumps(self.class_names),
            "image_size": json.dumps(list(self.image_size)),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
        }

    @classmethod
    def from_strings(cls, meta: Mapping[str, str], source: str | Path) -> WeightsMetadata:
        """Parse a file's metadata; a clear error when it is not singleshot's."""
        required = ("format", "model", "num_classes", "classes", "image_size", "mean", "std")
        missing = [k for k in required if k not in meta]
        if missing or meta["format"] != FORMAT:
            what = f"missing metadata {', '.join(missing)}" if missing else f"format is {meta['format']!r}"
            raise ValueError(
                f"{source}: not a singleshot model file ({what}); export it with `singleshot export` or save it with "
                "singleshot.weights.save_weights"
            )
        try:
            names = json.loads(meta["classes"])
            if len(names) != int(meta["num_classes"]):
                raise ValueError(f"{len(names)} class names for num_classes={meta['num_classes']}")
            h, w = json.loads(meta["image_size"])
            return cls(
                model=meta["model"],
                class_names=[str(n) for n in names],
                image_size=(int(h), int(w)),
                mean=tuple(float(v) for v in json.loads(meta["mean"])),  # type: ignore[arg-type]
                std=tuple(float(v) for v in json.loads(meta["std"])),  # type: ignore[arg-type]
                version=meta.get("singleshot_version", "?"),
                postprocess=json.loads(meta["postprocess"]) if "postprocess" in meta else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: damaged singleshot metadata ({exc})") from exc


def save_weights(
    model: SSD, path: str | Path, class_names: Sequence[str], state_dict: Mapping[str, Tensor] | None = None
) -> None:
    """Write ``model``'s weights (or ``state_dict``, e.g. its EMA) as ``.safetensors`` with metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in (state_dict or model.state_dict()).items()}
    meta = WeightsMetadata.of(model, class_names).to_strings()
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and raw metadata of a ``.safetensors`` file (any program's)."""
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
    tensors, raw = read_weights(path)
    meta = WeightsMetadata.from_strings(raw, path)
    post = {} if meta.postprocess is None else {"postprocess": PostProcessor.from_settings(meta.postprocess)}
    model = build(meta.model, num_classes=meta.num_classes, image_size=meta.image_size, **post)
    model.load_state_dict(tensors)
    return model.eval(), meta.class_names


def load_initial_weights(model: SSD, path: str | Path) -> str:
    """Start ``model`` from ``path``: our ``.safetensors``, or a torchvision SSD state dict (converted by
    :mod:`singleshot.convert.torchvision`; read with ``torch.load(weights_only=True)``). Tensors whose shapes
    differ (a head for another number of classes) are left as initialised. Returns a one-line report."""
    if str(path).endswith(".safetensors"):
        tensors, _ = read_weights(path)
    else:
        from singleshot.convert.torchvision import from_torchvision

        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        tensors = from_torchvision(state, model.name)
    own = model.state_dict()
    loadable = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(loadable, strict=False)
    return f"loaded {len(loadable)}/{len(own)} tensors from {path}"


__all__ = ["WeightsMetadata", "atomic_write", "load_initial_weights", "load_model", "read_weights", "save_weights"]
