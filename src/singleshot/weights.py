"""Our weight file: ``.safetensors`` with the model name, class names and preprocessing in its metadata, enough
to rebuild the model with nothing else (:func:`singleshot.predict.loading.load_model` does). Read without
executing code, written atomically (:func:`~singleshot.folders.atomic_write`: a kill at any moment leaves the old
file or the new one, never a torn one). This module reads and writes only this format; other programs' files are
:mod:`singleshot.convert`'s.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from singleshot.folders import atomic_write
from singleshot.postprocess import CLASS_CONF_KEY, PostProcessor, PostSettings
from singleshot.ssd import SSD
from singleshot.version import __version__

#: The ``format`` value in the metadata of every weight file singleshot writes.
FORMAT = "singleshot"


@dataclass(frozen=True)
class WeightsMetadata:
    """What a weight file says about its model (safetensors metadata is a ``str -> str`` map: lists are JSON)."""

    model: str
    class_names: list[str]
    _: KW_ONLY
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    version: str = __version__
    #: The model's post-processing settings (:meth:`PostProcessor.to_metadata`); exported models carry them, since
    #: no builder is called when they are loaded. None: the builder's own. With them, the per-class score
    #: thresholds prediction uses when the file carries some (:attr:`PostProcessor.class_conf`).
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
            model.name, list(class_names), image_size=tuple(p.image_size), mean=tuple(p.mean), std=tuple(p.std),
            postprocess=model.postprocess.to_metadata(), default_boxes=dataclasses.asdict(model.default_boxes),
        )  # fmt: skip  # keywords grouped by line

    @property
    def class_conf(self) -> tuple[float | None, ...] | None:
        """The per-class score thresholds the file carries (labels 1..C), None when it carries none."""
        return PostProcessor.from_metadata(self.postprocess).class_conf if self.postprocess is not None else None

    def with_class_conf(self, thresholds: Sequence[float | None] | None) -> WeightsMetadata:
        """A copy carrying ``thresholds`` (one per class, None for a class without one) as its per-class score
        thresholds; None: a copy carrying none.

        Raises:
            ValueError: not one threshold per class, one outside [0, 1], or metadata without post-processing
                settings (they would then become the defaults rather than the builder's own).
        """
        if self.postprocess is None:
            raise ValueError("this metadata has no post-processing settings to carry per-class thresholds")
        settings = {k: v for k, v in self.postprocess.items() if k != CLASS_CONF_KEY}
        if thresholds is not None:
            if len(thresholds) != self.num_classes:
                raise ValueError(f"{len(thresholds)} thresholds for a model of {self.num_classes} classes")
            settings[CLASS_CONF_KEY] = list(PostSettings(class_conf=tuple(thresholds)).class_conf or ())  # checked
        return dataclasses.replace(self, postprocess=settings)

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
                # the ignore below: 3 values in our files
                mean=tuple(float(v) for v in json.loads(meta["mean"])),  # type: ignore[arg-type]
                std=tuple(float(v) for v in json.loads(meta["std"])),  # type: ignore[arg-type]  # 3 values in our files
                version=meta.get("singleshot_version", "?"),
                postprocess=json.loads(meta["postprocess"]) if "postprocess" in meta else None,
                default_boxes=json.loads(meta["default_boxes"]) if "default_boxes" in meta else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: damaged singleshot metadata ({exc})") from exc


def save_weights(
    model: SSD,
    path: str | Path,
    class_names: Sequence[str],
    state_dict: Mapping[str, Tensor] | None = None,
    *,
    class_conf: Sequence[float | None] | None = None,
) -> None:
    """Write ``model``'s weights (or ``state_dict``, e.g. its EMA) as ``.safetensors`` with metadata; with
    ``class_conf``, carrying those per-class score thresholds (one per class, None for a class without one) in place
    of the model's own (:attr:`PostProcessor.class_conf`)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in (state_dict or model.state_dict()).items()}
    meta = WeightsMetadata.of(model, class_names)
    strings = (meta if class_conf is None else meta.with_class_conf(class_conf)).to_strings()
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=strings))


def save_weights_with_thresholds(
    source: str | Path, thresholds: Sequence[float | None] | None, path: str | Path
) -> None:
    """Write a copy of the weight file ``source`` (ours: ``.safetensors`` of ``singleshot train`` or
    :func:`save_weights`) to ``path`` (atomically), carrying ``thresholds`` as its per-class score thresholds (one
    per class, labels 1..C, None for a class without one, e.g. :func:`~singleshot.metrics.threshold_vector`);
    ``thresholds`` None: a copy carrying none. The tensors and the rest of the metadata are copied as they are.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not our weight file, or thresholds that do not fit it (see
            :meth:`WeightsMetadata.with_class_conf`).
    """
    tensors, raw = read_weights(source)
    meta = WeightsMetadata.from_strings(raw, source)  # its errors name the file
    try:
        meta = meta.with_class_conf(thresholds)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc
    strings = raw | {"postprocess": json.dumps(meta.postprocess)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=strings))


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


__all__ = ["FORMAT", "WeightsMetadata", "read_weights", "save_weights", "save_weights_with_thresholds"]
