""":class:`Detector`: a trained model with its class names, on a device, ready for images, folders and videos."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from singleshot.distributed import DistInfo, resolve_device
from singleshot.postprocess import PostProcessor
from singleshot.predict.backends import Backend, OnnxBackend, TorchBackend
from singleshot.predict.result import Result
from singleshot.predict.sources import Frame, SourceReport, expand, frames
from singleshot.ssd import SSD
from singleshot.types import Detection
from singleshot.weights import load_model

#: What ``predict`` keeps by default: score at least this ...
CONF = 0.25
#: ... after class-wise NMS at this IoU (the original's test setting) ...
IOU = 0.45
#: ... and at most this many detections per image (the original's test setting).
MAX_DET = 200


@dataclass(frozen=True)
class PostSettings:
    """How one image's detections are kept: least score, NMS IoU, most detections and the labels (1..C) kept;
    ``None`` takes the model's own setting (all classes for ``classes``). Hashable, so a batch mixing requests with
    different settings is post-processed group by group."""

    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    classes: tuple[int, ...] | None = None

    def kwargs(self) -> dict[str, Any]:
        """The :class:`~singleshot.postprocess.PostProcessor` arguments."""
        labels = None if self.classes is None else torch.tensor(self.classes, dtype=torch.int64)
        return {
            "score_threshold": self.conf,
            "nms_threshold": self.iou,
            "detections_per_image": self.max_det,
            "classes": labels,
        }


class Detector:
    """A model, its class names and the backend that runs it.

    Build one with :func:`singleshot.load` (a ``.safetensors`` file of ``singleshot train``, or an ``.onnx`` file
    of ``singleshot export``) or from a model in memory: ``Detector(model, class_names)``.

    Args:
        model: an :class:`~singleshot.ssd.SSD` (run by PyTorch on ``device``) or a ready backend
            (:class:`~singleshot.predict.backends.OnnxBackend`).
        precision: for PyTorch: ``fp32``, ``bf16`` (autocast) or ``auto`` (bf16 where this machine has native bf16
            and it measured faster, else fp32; see :mod:`singleshot.predict.precision`).
    """

    def __init__(
        self,
        model: SSD | Backend,
        class_names: Sequence[str],
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ) -> None:
        self.device = torch.device(device)
        if isinstance(model, SSD):
            if len(class_names) != model.num_classes:
                raise ValueError(f"{len(class_names)} class names for a model of {model.num_classes} classes")
            self.model: SSD | None = model
            self.backend: Backend = TorchBackend(model, self.device, precision)
        else:
            self.model, self.backend, self.device = None, model, torch.device("cpu")
        self.names = list(class_names)

    @classmethod
    def from_weights(
        cls,
        weights: str | Path,
        device: str = "auto",
        dist: DistInfo | None = None,
        precision: str = "fp32",
        onnx_threads: int | None = None,
    ) -> Detector:
        """Read ``weights``: a ``.safetensors`` file (see :func:`~singleshot.weights.load_model`) run by PyTorch on
        ``device`` (``auto``: this process's GPU when there is one, else the CPU) at ``precision``, or an ``.onnx``
        file of ``singleshot export`` run by ONNX Runtime on the CPU (its precision is the file's) with
        ``onnx_threads`` threads (default: one per physical core)."""
        if str(weights).endswith(".onnx"):
            if precision == "bf16":
                raise ValueError(f"{weights}: an ONNX file runs at its own precision; bf16 applies to PyTorch weights")
            backend = OnnxBackend(weights, onnx_threads)
            return cls(backend, backend.meta.class_names)
        model, names = load_model(weights)
        return cls(model, names, resolve_device(device, dist or DistInfo()), precision)

    @property
    def name(self) -> str:
        """The model's builder name (``ssd300_vgg16``, ...)."""
        return self.backend.name

    @property
    def image_size(self) -> tuple[int, int]:
        """The network's input ``(H, W)``."""
        return self.backend.image_size

    @property
    def postprocess(self) -> PostProcessor:
        """The model's own post-processing settings (those ``val`` uses)."""
        return self.backend.postprocess

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``int8`` (an ONNX file quantised by ``singleshot export --int8``)."""
        return self.backend.precision

    def class_labels(self, classes: Sequence[str | int] | None) -> Tensor | None:
        """Labels 1..C of ``classes`` given by name or by label; ``None`` keeps every class.

        Raises:
            ValueError: a name or label the model does not have (the message lists the model's classes).
        """
        if classes is None:
            return None
        labels = []
        for c in classes:
            if isinstance(c, str) and c not in self.names and c.isdigit():
                c = int(c)  # a label given on the command line
            if isinstance(c, str) and c in self.names:
                labels.append(self.names.index(c) + 1)
            elif isinstance(c, int) and 1 <= c <= len(self.names):
                labels.append(c)
            else:
                known = ", ".join(f"{i + 1}: {n}" for i, n in enumerate(self.names))
                raise ValueError(f"unknown class {c!r}; this model's classes are {known}")
        return torch.tensor(sorted(set(labels)), dtype=torch.int64)

    @torch.no_grad()
    def detect(
        self,
        images: Sequence[Tensor],
        sizes: Sequence[tuple[int, int]] | None = None,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        classes: Tensor | None = None,
    ) -> tuple[list[Detection], dict[str, float]]:
        """Detections of a batch of images, and the milliseconds spent per stage (for the whole batch).

        Args:
            images: uint8 (or float in [0, 1]) ``[3, h, w]`` tensors, any sizes.
            sizes: ``(H, W)`` to give each image's boxes in (default: the image's own size), e.g. the full size of
                an image decoded at a reduced scale.
            conf, iou, max_det, classes: post-processing settings (default: the model's own, the paper's for SSD).

        Returns:
            per image ``{"boxes" (D, 4) xyxy pixels of ``sizes``, "scores" (D,), "labels" (D,) in 1..C}`` on the
            CPU, and ``{"preprocess", "inference", "postprocess"}`` milliseconds.
        """
        labels = None if classes is None else tuple(int(c) for c in classes.tolist())
        return self.detect_each(images, [PostSettings(conf, iou, max_det, labels)] * len(images), sizes)

    @torch.no_grad()
    def detect_each(
        self,
        images: Sequence[Tensor],
        settings: Sequence[PostSettings],
        sizes: Sequence[tuple[int, int]] | None = None,
    ) -> tuple[list[Detection], dict[str, float]]:
        """:meth:`detect` with each image's own post-processing ``settings`` (one forward pass for the batch; the
        images sharing settings are post-processed together): a server's batch of requests."""
        b = self.backend
        sizes = [(int(im.shape[1]), int(im.shape[2])) for im in images] if sizes is None else list(sizes)
        start = time.perf_counter()
        batch = b.prepare(images)
        prepared = self._clock()
        outputs = b.infer(batch)
        inferred = self._clock()
        groups: dict[PostSettings, list[int]] = {}
        for i, setting in enumerate(settings):
            groups.setdefault(setting, []).append(i)
        detections: list[Detection | None] = [None] * len(images)
        for setting, index in groups.items():
            part = outputs if len(index) == len(images) else tuple(o[index] for o in outputs)
            for i, d in zip(index, b.detections(part, [sizes[i] for i in index], **setting.kwargs()), strict=True):
                detections[i] = Detection(**{k: v.cpu() for k, v in d.items()})  # type: ignore[typeddict-item]
        done = self._clock()
        ms = {"preprocess": prepared - start, "inference": inferred - prepared, "postprocess": done - inferred}
        return detections, {k: v * 1e3 for k, v in ms.items()}  # type: ignore[return-value]

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def predict(
        self,
        source: Any,
        conf: float = CONF,
        iou: float = IOU,
        max_det: int = MAX_DET,
        classes: Sequence[str | int] | None = None,
        batch: int = 8,
        stream: bool = False,
        vid_stride: int = 1,
        report: SourceReport | None = None,
    ) -> list[Result] | Iterator[Result]:
        """Detect objects in ``source``: an image or video path, a folder, a glob, a ``PIL.Image``, an ``H x W x 3``
        uint8 RGB array, a ``3 x H x W`` tensor, or a list of these (see :mod:`singleshot.predict.sources`).

        Returns one :class:`Result` per image or video frame, in order: a list, or with ``stream=True`` a generator
        (constant memory on long videos). Unreadable images are skipped with a warning and counted in ``report``;
        a missing source, an empty folder or an unreadable video raises a ValueError/FileNotFoundError naming it.

        Args:
            conf: least score kept; iou: NMS threshold; max_det: detections kept per image.
            classes: keep only these classes (names or labels 1..C).
            batch: images per forward pass; vid_stride: use every n-th video frame.
        """
        if batch < 1 or vid_stride < 1 or max_det < 1:
            raise ValueError(f"batch, vid_stride and max_det must be >= 1, got {batch}, {vid_stride}, {max_det}")
        if not (0 <= conf <= 1 and 0 <= iou <= 1):
            raise ValueError(f"conf and iou must be in [0, 1], got {conf}, {iou}")
        report = report if report is not None else SourceReport()
        items = expand(source, report)
        labels = self.class_labels(classes)
        results = self._results(items, conf, iou, max_det, labels, batch, vid_stride, report)
        return results if stream else list(results)

    def _results(
        self,
        items: list[Any],
        conf: float,
        iou: float,
        max_det: int,
        labels: Tensor | None,
        batch: int,
        vid_stride: int,
        report: SourceReport,
    ) -> Iterator[Result]:
        reduce_to = max(self.image_size)
        stream = frames(items, reduce_to, vid_stride, report)
        while chunk := list(islice(stream, batch)):
            yield from self._batch_results(chunk, conf, iou, max_det, labels)

    def _batch_results(
        self, chunk: list[Frame], conf: float, iou: float, max_det: int, labels: Tensor | None
    ) -> list[Result]:
        detections, ms = self.detect([f.image for f in chunk], [f.orig_size for f in chunk], conf, iou, max_det, labels)
        n = len(chunk)
        return [
            Result(
                boxes=d["boxes"],
                scores=d["scores"],
                labels=d["labels"],
                names=self.names,
                orig_size=f.orig_size,
                path=f.path,
                frame=f.frame,
                fps=f.fps,
                image=f.image,
                reload=f.reload,
                speed={
                    "preprocess": f.read_ms + ms["preprocess"] / n,
                    "inference": ms["inference"] / n,
                    "postprocess": ms["postprocess"] / n,
                },
            )
            for f, d in zip(chunk, detections, strict=True)
        ]
