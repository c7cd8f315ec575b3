"""Any weights argument to a model or a runtime: the one place that decides what runs a file.

* ``.onnx`` (``singleshot export``): ONNX Runtime (:class:`~singleshot.predict.backends.OnnxBackend`) or OpenVINO
  (:class:`~singleshot.predict.backends.OpenVinoBackend`);
* ``.safetensors`` (``singleshot train``, ``singleshot convert``): our model, rebuilt from the file's metadata
  (:mod:`singleshot.weights`);
* ``.pth``/``.pt`` (torchvision, ssd.pytorch), ``.caffemodel`` (the original Caffe SSD), ``torchvision:NAME``:
  converted on the fly (:mod:`singleshot.convert.files`, which tells those formats apart by their keys).

:func:`load_model` gives a model (training, export), :func:`load_backend` a runtime ready for
:class:`~singleshot.predict.Detector` (with ``backend="auto"``, the fastest here: :mod:`singleshot.predict.auto`),
:func:`load_initial_weights` fills a model being trained from any of the model files above. Nothing in a file is
executed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from singleshot.convert.files import convert_file, read_any
from singleshot.cpu import cpu_features
from singleshot.export.onnx_file import export_onnx
from singleshot.models import build
from singleshot.postprocess import PostProcessor
from singleshot.predict import auto
from singleshot.predict.auto import BackendChoice
from singleshot.predict.backends import Backend, OnnxBackend, OpenVinoBackend, TorchBackend
from singleshot.priors import DefaultBoxConfig
from singleshot.ssd import SSD
from singleshot.weights import WeightsMetadata, read_weights

#: Runtime files: :func:`load_backend` runs them as they are (no model is rebuilt).
RUNTIME_SUFFIXES = (".onnx", ".xml")
#: Other programs' model files, converted on the fly (as is ``torchvision:NAME``); any other file is read as ours.
FOREIGN_SUFFIXES = (".pth", ".pt", ".caffemodel")


def is_runtime_file(weights: str | Path) -> bool:
    """Whether ``weights`` is a runtime's file (an exported ``.onnx``, an OpenVINO ``.xml``) rather than a model's
    weights."""
    return Path(str(weights)).suffix.lower() in RUNTIME_SUFFIXES


def load_model(weights: str | Path) -> tuple[SSD, list[str]]:
    """The model in ``weights`` (in eval mode) and its class names: our ``.safetensors`` rebuilt from its metadata,
    any other model file (``.pth``, ``.pt``, ``.caffemodel``, ``torchvision:NAME``) converted.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a runtime file (``.onnx`` holds no model to train or export), or a file that is not readable
            or not a model's (the message names the file and the problem).
    """
    if is_runtime_file(weights):
        raise ValueError(f"{weights}: an exported runtime file; give the .safetensors weights it was exported from")
    if str(weights).startswith("torchvision:") or Path(str(weights)).suffix.lower() in FOREIGN_SUFFIXES:
        model, names, _ = convert_file(weights)
        return model, names
    tensors, raw = read_weights(weights)
    meta = WeightsMetadata.from_strings(raw, weights)
    extra: dict[str, Any] = {}
    if meta.postprocess is not None:  # with the per-class score thresholds the file carries, if any
        extra["postprocess"] = PostProcessor.from_metadata(meta.postprocess)
    if meta.default_boxes is not None:
        extra["default_boxes"] = DefaultBoxConfig.from_dict(meta.default_boxes)
    model = build(meta.model, num_classes=meta.num_classes, image_size=meta.image_size, **extra)
    model.load_state_dict(tensors)
    return model.eval(), meta.class_names


def load_backend(
    weights: str | Path,
    device: torch.device,
    *,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
) -> tuple[Backend, BackendChoice | None]:
    """The runtime for ``weights``, and what ``backend="auto"`` chose (``None`` when nothing was chosen).

    * ``backend``: ``pytorch``, ``onnxruntime``, ``openvino`` (the CPU, ``threads`` threads, default one per
      physical core) or ``auto``: the fastest of those installed for these weights on this CPU, measured once and
      cached (:mod:`singleshot.predict.auto`; a model file is exported to ONNX on the fly for the ONNX runtimes).
      On a GPU ``device`` a model file runs on PyTorch.
    * ``precision``: ``fp32``, ``bf16`` (PyTorch autocast: see :mod:`singleshot.predict.precision`), ``int8`` (an
      int8 ``.onnx``, or the checked one ``singleshot export --int8`` wrote beside a model file) or ``auto``. An
      ``.onnx`` file runs at its own precision.

    Raises:
        FileNotFoundError, ValueError: see :func:`load_model`; an unknown ``backend`` or ``precision``, or one these
            weights cannot run at (the message names the file and why).
        ImportError: a runtime asked for by name whose package is not installed.
    """
    if not is_runtime_file(weights) and (backend == "pytorch" or precision == "bf16" or device.type != "cpu"):
        if backend not in ("auto", "pytorch") or precision == "int8":
            raise ValueError(
                f"{weights}: backend={backend}, precision={precision} on {device}: a model file runs on PyTorch on a "
                "GPU or at bf16; int8 and the other runtimes run on the CPU"
            )
        model, names = load_model(weights)
        return TorchBackend(model, names, device, precision), None
    loaded: list[tuple[SSD, list[str]]] = []

    def model() -> tuple[SSD, list[str]]:
        if not loaded:
            loaded.append(load_model(weights))
        return loaded[0]

    def export(target: Path, sha256: str) -> Path:
        return export_onnx(*model(), target, source_sha256=sha256)

    found, skipped, identity = auto.candidates(weights, backend, precision, export)
    built: dict[str, Backend] = {}

    def build(candidate: auto.Candidate) -> Backend:
        if candidate.runtime == "pytorch":
            return TorchBackend(*model(), device, candidate.precision)
        assert candidate.file is not None  # an exported file's candidate
        runtime = OpenVinoBackend if candidate.runtime == "openvino" else OnnxBackend
        return runtime(candidate.file, threads)

    def timer(candidate: auto.Candidate) -> float:
        runner = built[candidate.label] = build(candidate)
        batch = runner.prepare([torch.randint(0, 256, (3, *runner.image_size), dtype=torch.uint8)])
        with torch.no_grad():
            return auto.measure(lambda: runner.infer(batch))

    key = auto.cache_key(identity, found, threads or cpu_features().physical_cores, torch.get_num_threads())
    choice = auto.choose(found, skipped, key, timer)
    chosen = built.get(choice.chosen.label) or build(choice.chosen)
    return chosen, (choice if backend == "auto" or precision == "auto" else None)


def load_initial_weights(model: SSD, path: str | Path, class_names: Sequence[str] | None = None) -> str:
    """Start ``model`` (whose classes are ``class_names``) from ``path``: any file ``singleshot convert`` reads
    (our ``.safetensors``, a torchvision or ssd.pytorch ``.pth``, a ``.caffemodel``, ``torchvision:NAME``).

    Tensors whose shapes match load. When the file has other classes, the class-score layers keep their fresh
    initialisation except for the background row and the rows of classes whose names both have, which come from the
    file (e.g. COCO's ``person`` into a model of ``person`` and ``helmet``). Returns a report of what was loaded,
    mapped and re-initialised.
    """
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


__all__ = ["is_runtime_file", "load_backend", "load_initial_weights", "load_model"]
