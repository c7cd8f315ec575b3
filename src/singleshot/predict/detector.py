""":class:`Detector`: a trained model with its class names, on a device, ready for images, folders and videos."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from singleshot.distributed import DistInfo, resolve_device
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


class Detector:
    """A model, its class names and its device.

    Build one with :func:`singleshot.load` (from a ``.safetensors`` file of ``singleshot train``) or from a model
    in memory: ``Detector(model, class_names)``.
    """

    def __init__(self, model: SSD, class_names: Sequence[str], device: str | torch.device = "cpu") -> None:
        if len(class_names) != model.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model of {model.num_classes} classes")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.names = list(class_names)

    @classmethod
    def from_weights(cls, weights: str | Path, device: str = "auto", dist: DistInfo | None = None) -> Detector:
        """Read ``weights`` (see :func:`~singleshot.weights.load_model`) onto ``device`` (``auto``: this process's
        GPU when there is one, else the CPU)."""
        model, names = load_model(weights)
        return cls(model, names, resolve_device(device, dist or DistInfo()))

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
        m = self.model
        sizes = [(int(im.shape[1]), int(im.shape[2])) for im in images] if sizes is None else list(sizes)
        start = time.perf_counter()
        x = m.normalize([im.to(self.device, non_blocking=True) for im in images])
        normalized = self._clock()
        cls_logits, bbox_regression = m.head_outputs(x)
        inferred = self._clock()
        detections = m.postprocess(
            cls_logits, bbox_regression, m.priors, sizes, score_threshold=conf, nms_threshold=iou,
            detections_per_image=max_det, classes=classes,
        )  # fmt: skip
        detections = [Detection(**{k: v.cpu() for k, v in d.items()}) for d in detections]  # type: ignore[typeddict-item]
        done = self._clock()
        ms = {"preprocess": normalized - start, "inference": inferred - normalized, "postprocess": done - inferred}
        return detections, {k: v * 1e3 for k, v in ms.items()}

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
        reduce_to = max(self.model.preprocessing.image_size)
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
