""":class:`Detector`: a trained model with its class names, on a device, ready for images, folders and videos."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from singleshot.distributed import DistInfo, barrier, resolve_device
from singleshot.postprocess import PREDICT, PostProcessor, PostSettings
from singleshot.predict.auto import BackendChoice
from singleshot.predict.backends import Backend, TorchBackend
from singleshot.predict.live import LiveSettings
from singleshot.predict.loading import load_backend
from singleshot.predict.result import Result
from singleshot.predict.slicing import DEFAULT_MERGE, DEFAULT_OVERLAP, SliceSettings, merge_tiles, windows_of
from singleshot.predict.sources import SourceReport, batches, expand, frames
from singleshot.predict.tracking import Tracker, TrackerSettings, continues
from singleshot.ssd import SSD
from singleshot.types import Detection


class Detector:
    """A model, its class names and the runtime that runs it.

    Build one with :func:`singleshot.load` (any file :mod:`singleshot.predict.loading` reads) or from a model in memory:
    ``Detector(model, class_names)``.

    Args:
        model: an :class:`~singleshot.ssd.SSD` (run by PyTorch on ``device``) or a ready runtime
            (:class:`~singleshot.predict.backends.OnnxBackend`, :class:`~singleshot.predict.backends.TorchBackend`).
        precision: for PyTorch: ``fp32``, ``bf16`` (autocast) or ``auto`` (bf16 where this machine has native bf16
            and it measured faster, else fp32; see :mod:`singleshot.predict.precision`). ``bf16`` on a CPU without
            native bf16 runs fp32 with a warning unless ``force_bf16``.
    """

    def __init__(
        self,
        model: SSD | Backend,
        class_names: Sequence[str],
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        force_bf16: bool = False,
    ) -> None:
        if isinstance(model, SSD):
            backend: Backend = TorchBackend(model, class_names, torch.device(device), precision, force_bf16)
        else:
            backend = model
        self.backend = backend
        self.model: SSD | None = backend.model if isinstance(backend, TorchBackend) else None
        self.device = backend.device
        self.names = list(class_names)
        #: What ``backend="auto"`` chose and why (:meth:`from_weights`); ``None`` when nothing was chosen.
        self.choice: BackendChoice | None = None

    @classmethod
    def from_weights(
        cls,
        weights: str | Path,
        device: str = "auto",
        *,
        dist: DistInfo | None = None,
        backend: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
    ) -> Detector:
        """The detector of ``weights`` (:func:`~singleshot.predict.loading.load_backend`) on ``device`` (``auto``:
        this process's GPU when there is one, else the CPU): ``backend`` ``pytorch``, ``onnxruntime``, ``openvino``
        or ``auto`` (the fastest on this machine, measured once; :attr:`choice` says what it chose and why), at
        ``precision`` (``fp32``, ``bf16``, ``int8`` or ``auto``), the exported runtimes with ``threads`` threads
        (default: one per physical core)."""
        info = dist or DistInfo()
        if info.enabled and not info.is_main:
            barrier(info)  # under torchrun rank 0 measures (backend="auto") and the others read its cached choice
        runner, choice = load_backend(
            weights, resolve_device(device, info), backend=backend, precision=precision, threads=threads
        )
        if info.enabled and info.is_main:
            barrier(info)
        detector = cls(runner, runner.class_names)
        detector.choice = choice
        return detector

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
    def runtime(self) -> str:
        """What runs the network: ``pytorch``, ``onnxruntime`` or ``openvino``."""
        return self.backend.runtime

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``int8`` (an ONNX file quantised by ``singleshot export --int8``)."""
        return self.backend.precision

    def class_labels(self, classes: Sequence[str | int] | None) -> tuple[int, ...] | None:
        """Labels 1..C of ``classes`` given by name or by label, sorted; ``None`` keeps every class.

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
        return tuple(sorted(set(labels)))

    @torch.no_grad()
    def detect(
        self,
        images: Sequence[Tensor],
        sizes: Sequence[tuple[int, int]] | None = None,
        settings: PostSettings | Sequence[PostSettings] | None = None,
    ) -> tuple[list[Detection], dict[str, float]]:
        """Detections of a batch of images (one forward pass), and the milliseconds spent per stage for the batch.

        Args:
            images: uint8 (or float in [0, 1]) ``[3, h, w]`` tensors, any sizes.
            sizes: ``(H, W)`` to give each image's boxes in (default: the image's own size), e.g. the full size of
                an image decoded at a reduced scale.
            settings: the post-processing settings (default: the model's own, the paper's for SSD), or one per image
                (a server's batch of requests: the images sharing settings are post-processed together).

        Returns:
            per image ``{"boxes" (D, 4) xyxy pixels of ``sizes``, "scores" (D,), "labels" (D,) in 1..C}`` on the
            CPU, and ``{"preprocess", "inference", "postprocess"}`` milliseconds.
        """
        b = self.backend
        sizes = [(int(im.shape[1]), int(im.shape[2])) for im in images] if sizes is None else list(sizes)
        each = [settings or b.postprocess.settings] * len(images) if not isinstance(settings, Sequence) else settings
        start = time.perf_counter()
        batch = b.prepare(images)
        prepared = self._clock()
        outputs = b.infer(batch)
        inferred = self._clock()
        groups: dict[PostSettings, list[int]] = {}
        for i, setting in enumerate(each):
            groups.setdefault(setting, []).append(i)
        detections: list[Detection | None] = [None] * len(images)
        for setting, index in groups.items():
            part = outputs if len(index) == len(images) else tuple(o[index] for o in outputs)
            for i, d in zip(index, b.detections(part, [sizes[i] for i in index], setting), strict=True):
                # the ignore below: the Detection keys
                detections[i] = Detection(**{k: v.cpu() for k, v in d.items()})  # type: ignore[typeddict-item]
        done = self._clock()
        ms = {"preprocess": prepared - start, "inference": inferred - prepared, "postprocess": done - inferred}
        return detections, {k: v * 1e3 for k, v in ms.items()}  # type: ignore[return-value]  # floats

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def predict(
        self,
        source: Any,
        *,
        conf: float | None = None,
        iou: float = PREDICT.iou,
        max_det: int = PREDICT.max_det,
        classes: Sequence[str | int] | None = None,
        batch: int = 8,
        stream: bool = False,
        vid_stride: int = 1,
        report: SourceReport | None = None,
        slice: int | tuple[int, int] | None = None,
        overlap: float = DEFAULT_OVERLAP,
        full_image: bool = True,
        merge: Literal["nms", "nmm"] = DEFAULT_MERGE,
        timeout: float = 10.0,
        reconnect: int = 5,
    ) -> list[Result] | Iterator[Result]:
        """Detect objects in ``source``: an image or video path, a folder, a glob, a ``PIL.Image``, an ``H x W x 3``
        uint8 RGB array, a ``3 x H x W`` tensor, a live source (a webcam index such as ``0``, a ``/dev/video*``
        device, an ``rtsp://``, ``udp://``, ``http(s)://``, ... stream), or a list of these (see
        :mod:`singleshot.predict.sources`).

        Returns one :class:`Result` per image or video frame, in order: a list, or with ``stream=True`` a generator
        (constant memory on long videos; what a live source needs, since its frames end only when it does).
        Unreadable images are skipped with a warning and counted in ``report``; a missing source, an empty folder
        or an unreadable video raises a ValueError/FileNotFoundError naming it, a live source that cannot be
        opened a :class:`~singleshot.predict.live.LiveSourceError` (a ValueError).

        A live source gives the newest frame each time the model is ready (:mod:`singleshot.predict.live`): the
        frames it had no time for are skipped and counted in ``report``, ``Result.frame`` counts them, ``Result.path``
        is None and ``Result.stream`` is the source as given; each live frame goes through the network at once,
        never waiting to fill a batch.

        Args:
            conf: least score kept, for every class; None: the weights' per-class thresholds when they carry them
                (``singleshot train`` writes its final evaluation's best-F1 ones), else 0.25 (:data:`PREDICT
                <singleshot.postprocess.PREDICT>`); see :meth:`PostProcessor.predict_settings
                <singleshot.postprocess.PostProcessor.predict_settings>`.
            iou: NMS threshold; max_det: detections kept per image (the other post-processing settings are the
                model's own; see :class:`~singleshot.postprocess.PostSettings`).
            classes: keep only these classes (names or labels 1..C).
            batch: images (with ``slice``: tiles) per forward pass; vid_stride: use every n-th video frame (files
                only).
            slice: sliced inference for small objects (:mod:`singleshot.predict.slicing`): tiles of this side (or
                ``(H, W)``) at native resolution, neighbours overlapping by ``overlap`` of a side, plus the whole
                image when ``full_image``, merged across tiles by ``merge`` (``nms`` or ``nmm``);
                ``Result.speed["tiles"]`` says how many windows ran.
            timeout: live sources: seconds to wait when opening or reading before the source counts as unreachable
                (an error) or dropped; reconnect: attempts in a row to reopen a dropped stream (backoff 0.5 s
                doubling to 8 s), after which its frames end (see :class:`~singleshot.predict.live.LiveSettings`).
        """
        if batch < 1 or vid_stride < 1:
            raise ValueError(f"batch and vid_stride must be >= 1, got {batch}, {vid_stride}")
        live = LiveSettings(timeout, reconnect)
        settings = self.backend.postprocess.predict_settings(
            conf, iou=iou, max_det=max_det, classes=self.class_labels(classes)
        )
        slicing = SliceSettings.of(slice, overlap, full_image, merge)
        report = report if report is not None else SourceReport()
        items = expand(source, report)
        if slicing is None:
            results = self._results(items, settings, batch, vid_stride, report, live)
        else:
            results = self._sliced_results(items, settings, slicing, batch, vid_stride, report, live)
        return results if stream else list(results)

    def _results(
        self,
        items: list[Any],
        settings: PostSettings,
        batch: int,
        vid_stride: int,
        report: SourceReport,
        live: LiveSettings | None = None,
    ) -> Iterator[Result]:
        """The results of ``items``, ``batch`` frames per forward pass (a live frame alone, at once); closing this
        generator closes the frames' (a live reader's thread stops)."""
        with closing(frames(items, max(self.image_size), vid_stride, report, live)) as stream:
            for chunk in batches(stream, batch):
                detections, ms = self.detect([f.image for f in chunk], [f.orig_size for f in chunk], settings)
                n = len(chunk)
                for f, d in zip(chunk, detections, strict=True):
                    yield Result(
                        boxes=d["boxes"], scores=d["scores"], labels=d["labels"], names=self.names,
                        orig_size=f.orig_size, path=f.path, frame=f.frame, fps=f.fps, stream=f.stream,
                        image=f.image, reload=f.reload,
                        speed={
                            "preprocess": f.read_ms + ms["preprocess"] / n,
                            "inference": ms["inference"] / n,
                            "postprocess": ms["postprocess"] / n,
                        },
                    )  # fmt: skip  # the Result's fields, grouped by line rather than one per line

    def detect_sliced(
        self, image: Tensor, slicing: SliceSettings, settings: PostSettings | None = None, batch: int = 8
    ) -> tuple[Detection, dict[str, float]]:
        """Detections of one image by sliced inference (:mod:`singleshot.predict.slicing`): its windows
        (:func:`~singleshot.predict.slicing.windows_of`) run ``batch`` at a time through the forward pass, each
        post-processed with ``settings`` (default: the model's own), shifted back and merged.

        Args:
            image: uint8 (or float in [0, 1]) ``[3, H, W]`` at native resolution.

        Returns:
            the detections (xyxy pixels of ``image``, on the CPU), and milliseconds per stage with ``tiles``, the
            number of windows run.
        """
        h, w = int(image.shape[1]), int(image.shape[2])
        windows = windows_of(h, w, slicing)
        crops = [image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in windows.tolist()]
        found: list[Detection] = []
        ms = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        for start in range(0, len(crops), batch):
            detections, part = self.detect(crops[start : start + batch], None, settings)
            found += detections
            ms = {k: ms[k] + part[k] for k in ms}
        started = time.perf_counter()
        offsets = windows[:, :2].repeat(1, 2).to(torch.float32)
        merged = merge_tiles(
            torch.cat([d["boxes"] + offsets[k] for k, d in enumerate(found)]),
            torch.cat([d["scores"] for d in found]),
            torch.cat([d["labels"] for d in found]),
            torch.cat([torch.full((len(d["labels"]),), k) for k, d in enumerate(found)]),
            slicing.merge,
            (settings or self.backend.postprocess.settings).max_det,
        )
        ms["postprocess"] += (time.perf_counter() - started) * 1e3
        return merged, ms | {"tiles": float(len(windows))}

    def _sliced_results(
        self,
        items: list[Any],
        settings: PostSettings,
        slicing: SliceSettings,
        batch: int,
        vid_stride: int,
        report: SourceReport,
        live: LiveSettings | None = None,
    ) -> Iterator[Result]:
        """The results of ``items`` by sliced inference, each frame read at native resolution."""
        with closing(frames(items, None, vid_stride, report, live)) as stream:
            for f in stream:
                d, ms = self.detect_sliced(f.image, slicing, settings, batch)
                yield Result(
                    boxes=d["boxes"], scores=d["scores"], labels=d["labels"], names=self.names,
                    orig_size=f.orig_size, path=f.path, frame=f.frame, fps=f.fps, stream=f.stream,
                    image=f.image, reload=f.reload, speed=ms | {"preprocess": f.read_ms + ms["preprocess"]},
                )  # fmt: skip  # the Result's fields, grouped by line rather than one per line

    def track(
        self,
        source: Any,
        *,
        tracker: TrackerSettings | str = "bytetrack",
        conf: float | None = None,
        iou: float = PREDICT.iou,
        max_det: int = PREDICT.max_det,
        classes: Sequence[str | int] | None = None,
        batch: int = 8,
        stream: bool = False,
        vid_stride: int = 1,
        fps: float = 30.0,
        report: SourceReport | None = None,
        timeout: float = 10.0,
        reconnect: int = 5,
    ) -> list[Result] | Iterator[Result]:
        """Detect and track objects in videos, live streams or image sequences: as :meth:`predict`, with each
        :class:`Result` keeping only the detections in a confirmed track and giving their ids in ``track_ids``
        ``(K,)`` int64 (from 1; one id per object for the whole video). A new tracker starts with each video or
        stream; the images of a folder (or list) are one sequence, in order, at ``fps``.

        Args:
            tracker: ``bytetrack``, ``sort``, ``ocsort``, or :class:`~singleshot.predict.tracking.TrackerSettings`.
            conf: least score of a detection handed to the tracker; None: the tracker's ``low`` threshold (0.1 for
                ByteTrack, whose second association uses the low-scoring boxes); the weights' per-class thresholds
                are not used here.
            iou, max_det, classes, batch, vid_stride, report, timeout, reconnect: as :meth:`predict`.
            fps: frame rate of an image sequence (videos and streams give their own).

        Raises:
            ValueError: an unknown tracker (listing the choices), settings out of range, or what :meth:`predict`
                raises.
        """
        settings = (TrackerSettings(tracker) if isinstance(tracker, str) else tracker).resolved()  # type: ignore[arg-type]
        found = self.predict(
            source, conf=settings.low if conf is None else conf, iou=iou, max_det=max_det, classes=classes,
            batch=batch, stream=True, vid_stride=vid_stride, report=report, timeout=timeout, reconnect=reconnect,
        )  # fmt: skip  # the options grouped by line
        tracked = self._tracked(found, settings, fps)  # type: ignore[arg-type]  # stream=True: an iterator
        return tracked if stream else list(tracked)

    def _tracked(self, results: Iterator[Result], settings: TrackerSettings, fps: float) -> Iterator[Result]:
        """``results`` with track ids; a new tracker for each sequence (:func:`.tracking.continues`)."""
        tracker: Tracker | None = None
        previous: Result | None = None
        for r in results:
            if tracker is None or not continues(previous, r):
                tracker = Tracker(settings, r.fps or fps)
            before = tracker.ms
            kept, ids = tracker.update(r.detection, None if r.frame is None else r.frame / tracker.fps)
            previous = r
            yield dataclasses.replace(
                r, boxes=r.boxes[kept], scores=r.scores[kept], labels=r.labels[kept], track_ids=ids,
                speed=r.speed | {"track": tracker.ms - before},
            )  # fmt: skip  # the fields grouped by line
