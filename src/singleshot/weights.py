"""The user weight file: ``.safetensors`` with the model name, class names and preprocessing in its metadata,
enough to rebuild the model with nothing else (:func:`load_model`). Read without executing code, written
atomically (:func:`atomic_write`: a kill at any moment leaves the old file or the new one, never a torn one).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
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
from singleshot.priors import DefaultBoxConfig
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
    #: The default-box design (:class:`~singleshot.priors.DefaultBoxConfig` fields), e.g. an imported model's own
    #: (torchvision's COCO scales, ssd.pytorch's clamping). None: the builder's own.
    default_boxes: dict[str, Any] | None = None

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
            postprocess=model.postprocess.settings(), default_boxes=dataclasses.asdict(model.default_boxes),
        )  # fmt: skip

    def to_strings(self) -> dict[str, str]:
        extra = {} if self.postprocess is None else {"postprocess": json.dumps(self.postprocess)}
        if self.default_boxes is not None:
            extra["default_boxes"] = json.dumps(self.default_boxes)
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
                default_boxes=json.loads(meta["default_boxes"]) if "default_boxes" in meta else None,
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


#: Files of other programs that :func:`load_model` converts on the fly (see :mod:`singleshot.convert.files`).
FOREIGN_SUFFIXES = (".pth", ".pt", ".caffemodel")


def load_model(path: str | Path) -> tuple[SSD, list[str]]:
    """Rebuild the model saved by :func:`save_weights`; returns it (in eval mode) and its class names. Weights of
    other programs (``.pth``, ``.pt``, ``.caffemodel``, ``torchvision:NAME``) are converted on the fly."""
    if str(path).startswith("torchvision:") or Path(path).suffix.lower() in FOREIGN_SUFFIXES:
        from singleshot.convert.files import convert_file

        model, names, _ = convert_file(path)
        return model, names
    tensors, raw = read_weights(path)
    meta = WeightsMetadata.from_strings(raw, path)
    extra: dict[str, Any] = {}
    if meta.postprocess is not None:
        extra["postprocess"] = PostProcessor.from_settings(meta.postprocess)
    if meta.default_boxes is not None:
        extra["default_boxes"] = DefaultBoxConfig.from_dict(meta.default_boxes)
    model = build(meta.model, num_classes=meta.num_classes, image_size=meta.image_size, **extra)
    model.load_state_dict(tensors)
    return model.eval(), meta.class_names


def read_torch_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.pt``/``.pth`` file, read with ``torch.load(weights_only=True)`` only (plain
    containers, tensors and numbers; nothing in the file is executed). A checkpoint that wraps its state dict
    (``{"model": ...}``, ``{"state_dict": ...}``) is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file whose unpickling would run code (refused, with the reason), or one that is truncated
            or not a PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path}: refused: loading it would need arbitrary unpickling, which can run code hidden in the file "
            f"({reason}); singleshot reads .pt/.pth files with torch.load(weights_only=True) only. Re-save it as a "
            "plain state dict (torch.save(model.state_dict(), path)) where you trust it."
        ) from exc
    except Exception as exc:
        raise ValueError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})") from exc
    for key in ("model", "state_dict", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def load_initial_weights(model: SSD, path: str | Path, class_names: Sequence[str] | None = None) -> str:
    """Start ``model`` (whose classes are ``class_names``) from ``path``: any file ``singleshot convert`` reads
    (our ``.safetensors``, a torchvision or ssd.pytorch ``.pth``, a ``.caffemodel``, ``torchvision:NAME``).

    Tensors whose shapes match load. When the file has other classes, the class-score layers keep their fresh
    initialisation except for the background row and the rows of classes whose names both have, which come from the
    file (e.g. COCO's ``person`` into a model of ``person`` and ``helmet``). Returns a report of what was loaded,
    mapped and re-initialised.
    """
    from singleshot.convert.files import read_any

    tensors, source_names, source = read_any(path)
    own = model.state_dict()
    loadable = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    lines = [f"loaded {len(loadable)}/{len(own)} tensors from {path}"]
    if source["name"] != model.name:
        lines.append(f"the file holds a {source['name']}, the model is a {model.name}: only matching tensors loaded")
    names = list(class_names) if class_names is not None else None
    if names is not None and source_names is not None and source_names != names:
        shared = [n for n in names if n in source_names]
        mapped = _map_class_rows(model, tensors, source_names, names, loadable)
        fresh = [n for n in names if n not in source_names]
        lines.append(
            f"class scores: background and {len(shared)} shared classes ({', '.join(shared) or 'none'}) taken from "
            f"the file in {mapped} layers; re-initialised: {', '.join(fresh) or 'none'}"
        )
    model.load_state_dict(loadable, strict=False)
    return "\n".join(lines)


def _map_class_rows(
    model: SSD, tensors: Mapping[str, Tensor], source: list[str], target: list[str], loadable: dict[str, Tensor]
) -> int:
    """Fill ``loadable`` with class-score layers of ``model``'s shape whose background and shared-class rows come
    from ``tensors``; returns the number of layers mapped. Rows are laid out per default box: ``A`` groups of
    ``C + 1`` (background first)."""
    own = model.state_dict()
    src_logits, dst_logits = len(source) + 1, len(target) + 1
    pairs = [(0, 0)] + [(target.index(n) + 1, source.index(n) + 1) for n in target if n in source]
    mapped = 0
    for key, value in own.items():
        if not key.startswith("head.cls.") or key not in tensors or key in loadable:
            continue  # not a class-score tensor, or one that loads as it is (same classes, or a depthwise layer)
        src = tensors[key]
        if src.shape[0] % src_logits or value.shape[0] % dst_logits or src.shape[1:] != value.shape[1:]:
            continue  # a depthwise layer of the predictor, or a shape that does not follow the layout
        boxes = value.shape[0] // dst_logits
        if src.shape[0] // src_logits != boxes:
            continue
        new = value.clone()
        for a in range(boxes):
            for dst, s in pairs:
                new[a * dst_logits + dst] = src[a * src_logits + s]
        loadable[key] = new
        mapped += key.endswith("weight")
    return mapped


__all__ = [
    "WeightsMetadata",
    "atomic_write",
    "load_initial_weights",
    "load_model",
    "read_torch_file",
    "read_weights",
    "save_weights",
]
