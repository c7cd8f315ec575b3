"""``singleshot predict``: detections on images, folders, videos and live streams, written to
``runs/predict/<name>/``.

* annotated images under their own file names, annotated videos as ``<stem>.mp4`` (H.264, the source's frame
  rate);
* a live source (webcam index, ``/dev/video*``, ``rtsp://``, ``udp://``, ... URL; :mod:`singleshot.predict.live`)
  as ``<safe name>.mp4`` (``webcam0``, ``udp_127.0.0.1_5000``: the address in letters, digits and ``._-``), each
  frame at its index in the stream, so the video plays in real time although the frames the model had no time for
  are skipped (counted in the summary); ``timeout`` and ``reconnect`` say how long to wait for the stream and how
  often to reopen it when it drops, after which the run ends normally;
* ``predictions.json``: every detection in the COCO results format (``image_id``, ``category_id`` = label 1..C,
  ``bbox`` x, y, w, h pixels, ``score``) plus ``file_name`` (a live source's address) and ``frame`` (video or stream
  frame index, else null); ``image_id`` counts the images and frames in source order;
* with ``save_txt``, ``labels/<stem>.txt`` (videos: ``<stem>_<frame>.txt``), YOLO lines ``class cx cy w h conf``;
* with ``save_crop``, ``crops/<class>/<stem>[_<frame>]_<k>.jpg``.

Ctrl-C (SIGINT) stops a run cleanly, the way to end a live one: the video being written is finished (a valid MP4),
``predictions.json`` and the summary hold everything predicted until then, a line says the run was interrupted, and
the exit status is 130 (128 + SIGINT, the shell's convention for a command ended by Ctrl-C; :func:`run` raises
:class:`InterruptedRunError`, a :class:`~singleshot.config.CommandError` carrying the :class:`PredictRun`).

Under ``torchrun`` each process predicts its share of the sources (whole files) and rank 0 writes one
``predictions.json``, the same as a single process writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch.distributed as dist

from singleshot.config import CommandError, Config, setting, shared
from singleshot.distributed import DistInfo, gather_shards, process_group, shard
from singleshot.folders import new_run_dir
from singleshot.postprocess import PREDICT
from singleshot.predict.detector import Detector
from singleshot.predict.live import SKIPPED, live_problems, safe_name, shown
from singleshot.predict.result import Result
from singleshot.predict.slicing import slice_problems
from singleshot.predict.sources import SourceReport, expand
from singleshot.predict.video import VideoWriter
from singleshot.progress import Progress


@dataclass
class PredictConfig(Config):
    """What ``singleshot predict`` runs on, what it keeps and what it writes."""

    what: ClassVar[str] = "predict"

    weights: str = shared("model_file", task="run")
    source: str = setting(
        help="image, video, folder (images and videos in it), glob pattern, or live source: webcam index (0), "
        "/dev/videoN, or rtsp://, rtmp://, udp://, tcp://, srt://, http(s):// stream"
    )
    conf: float | None = setting(
        None, "least score of a detection kept; none: the weights' per-class thresholds when they carry them, else 0.25"
    )
    iou: float = setting(
        PREDICT.iou, "IoU above which non-maximum suppression removes a lower-scoring box of its class"
    )
    max_det: int = setting(PREDICT.max_det, "most detections kept per image")
    classes: list[str] | None = setting(None, "keep only these classes (names, or labels 1..C); none keeps all")
    batch: int = setting(8, "images per forward pass (per process under torchrun)")
    device: str = shared("device")
    backend: Literal["auto", "pytorch", "onnxruntime", "openvino"] = shared("backend")
    precision: Literal["auto", "fp32", "bf16", "int8"] = shared("precision")
    vid_stride: int = setting(1, "predict on every n-th video frame (the written video then has only those)")
    timeout: float = shared("timeout")
    reconnect: int = shared("reconnect")
    save: bool = setting(True, "write annotated images, videos and predictions.json (--no-save prints instead)")
    save_txt: bool = setting(False, "also write YOLO label files (class cx cy w h conf) to labels/")
    save_crop: bool = setting(False, "also write each detection's crop to crops/<class>/")
    line_width: int | None = setting(None, "box line width in pixels; none scales with the image")
    slice: int | None = shared("slice")
    overlap: float = shared("overlap")
    full_image: bool = shared("full_image")
    merge: Literal["nms", "nmm"] = shared("merge")
    project: str = shared("project", task="predict")
    name: str = shared("name")
    exist_ok: bool = shared("exist_ok")

    def problems(self) -> list[str]:
        bad = [f"{k}={v}" for k, v in {"batch": self.batch, "vid_stride": self.vid_stride}.items() if v < 1]
        try:
            PREDICT.replace(conf=PREDICT.conf if self.conf is None else self.conf, iou=self.iou, max_det=self.max_det)
        except ValueError as exc:  # the post-processing settings' own check
            bad.append(str(exc))
        bad += slice_problems(self.slice, self.overlap, self.full_image, self.merge)
        bad += live_problems(self.timeout, self.reconnect)
        return bad


@dataclass
class PredictRun:
    """What :func:`run` did: where it wrote, how many images and frames, what it skipped."""

    run_dir: Path | None  # None with save=False
    images: int
    detections: int
    predictions: list[dict[str, Any]] = field(repr=False)
    skipped: SourceReport = field(default_factory=SourceReport)
    speed: dict[str, float] = field(default_factory=dict)  # mean milliseconds per image
    interrupted: bool = False  # stopped by Ctrl-C (the outputs hold what was predicted until then)


class InterruptedRunError(CommandError):
    """A run stopped by Ctrl-C after writing its outputs completely: exit status 130; ``run`` is what it did (a
    :class:`PredictRun`, or ``singleshot track``'s ``TrackRun``), ``done`` says how far it got."""

    def __init__(self, run: Any, done: str) -> None:
        where = getattr(run, "run_dir", None)
        super().__init__(
            f"interrupted (Ctrl-C) after {done}; what was done until then is written"
            + (f" to {where}" if where is not None else ""),
            exit_code=130,
        )
        self.run = run


class _Outputs:
    """The files of one run folder: annotated images, videos (one writer open at a time), labels, crops."""

    def __init__(self, run_dir: Path, config: PredictConfig) -> None:
        self.run_dir = run_dir
        self.config = config
        self.video: VideoWriter | None = None

    def add(self, result: Result, name: str, stem: str) -> None:
        """Write ``result``'s files: an image as ``name``, a video frame into ``<video stem>.mp4``, a live frame
        into ``<safe name>.mp4`` at its index in the stream; labels and crops under ``stem``."""
        c = self.config
        if result.frame is None:
            result.save(self.run_dir / name, line_width=c.line_width)
        else:
            if result.stream is not None:  # live: each frame at its index in the stream (real-time playback)
                target, pts = self.run_dir / f"{safe_name(result.stream)}.mp4", result.frame
            else:
                assert result.path is not None
                target, pts = self.run_dir / f"{result.path.stem}.mp4", None
            if self.video is None or self.video.path != target:
                self.close()
                self.video = VideoWriter(target, result.fps or 25.0)
            self.video.write(np.asarray(result.plot(line_width=c.line_width)), pts)
        if c.save_txt:
            (self.run_dir / "labels").mkdir(exist_ok=True)
            (self.run_dir / "labels" / f"{stem}.txt").write_text(result.to_yolo_txt())
        if c.save_crop:
            for k, (name, crop) in enumerate(result.crops()):
                (self.run_dir / "crops" / name).mkdir(parents=True, exist_ok=True)
                crop.save(self.run_dir / "crops" / name / f"{stem}_{k}.jpg", quality=95)

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
            self.video = None


def _names(result: Result, index: int) -> tuple[str, str]:
    """The file name of source item ``index`` (in-memory images: ``image<index>.jpg``; a live source: its address,
    password masked)
    and the stem of this result's label and crop files (video and live frames: ``<stem>_<frame>``)."""
    if result.stream is not None:  # a URL's password is not written into the outputs
        return shown(result.stream), f"{safe_name(result.stream)}_{result.frame}"
    name = result.path.name if result.path is not None else f"image{index}.jpg"
    stem = Path(name).stem
    return name, stem if result.frame is None else f"{stem}_{result.frame}"


def _line(result: Result) -> str:
    where = result.stream or (str(result.path) if result.path is not None else "image")
    where += f" frame {result.frame}" if result.frame is not None else ""
    found = ", ".join(f"{n} {s:.2f}" for n, s in zip(result.class_names, result.scores.tolist(), strict=True))
    return f"{where}: {len(result)} detections" + (f" ({found})" if found else "")


def run(config: PredictConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> PredictRun:
    """Run ``singleshot predict`` (module docstring); under ``torchrun``, as one of its processes."""
    config.validate()
    with process_group(config.device) as info:
        detector = Detector.from_weights(
            config.weights, config.device, dist=info, backend=config.backend, precision=config.precision
        )
        report = SourceReport()  # what the listing left out (every rank lists all sources; rank 0's counts)
        items = expand(config.source, report)
        reading = SourceReport()  # what this rank could not read
        run_dir = _shared_run_dir(config, info) if config.save else None
        if info.is_main and detector.choice is not None:
            log(detector.choice.describe())
        if run_dir is not None and info.is_main:
            log(f"{detector.name} on {len(items)} sources from {config.source} -> {run_dir}")
        results = detector.predict(
            [items[i] for i in shard(len(items), info)], conf=config.conf, iou=config.iou, max_det=config.max_det,
            classes=config.classes, batch=config.batch, stream=True, vid_stride=config.vid_stride, report=reading,
            slice=config.slice, overlap=config.overlap, full_image=config.full_image, merge=config.merge,
            timeout=config.timeout, reconnect=config.reconnect,
        )  # fmt: skip  # the options grouped by line
        outputs = _Outputs(run_dir, config) if run_dir is not None else None
        mine = _consume(results, outputs, progress and info.is_main, log)
        done = _gather(mine, reading, report, run_dir, info, log)
        if mine.interrupted:
            done.interrupted = True
            raise InterruptedRunError(done, f"{done.images} images/frames")
        return done


#: The stages each result's ``speed`` times, in milliseconds.
STAGES = ("preprocess", "inference", "postprocess")


@dataclass
class _Shard:
    """What one process predicted: per source item ``[(frame, COCO rows without image id, file name)]``, the
    images and frames, and the summed milliseconds per stage."""

    entries: list[list[Any]] = field(default_factory=list)
    count: int = 0
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    interrupted: bool = False  # by Ctrl-C


def _consume(results: Iterator[Result], outputs: _Outputs | None, progress: bool, log: Callable[[str], None]) -> _Shard:
    """Write each result's files (or log a line per result when nothing is saved), under a progress bar. Ctrl-C
    ends it early, the shard marked interrupted: the sources are closed (a live reader's thread stops and its counts
    reach the report) and the outputs finished, so that what was predicted is written completely."""
    mine = _Shard()
    bar = Progress(results, total=None, desc="predict", enabled=progress)
    previous: Result | None = None
    try:
        for result in bar:
            if (
                result.frame is None
                or previous is None
                or previous.frame is None
                or result.path != previous.path
                or result.stream != previous.stream
                or result.frame <= previous.frame
            ):  # an image, or the first frame of a video or stream
                mine.entries.append([])
            previous = result
            mine.count += 1
            for k in mine.totals:
                mine.totals[k] += result.speed[k]
            name, stem = _names(result, len(mine.entries) - 1)
            mine.entries[-1].append((result.frame, result.to_coco(image_id=-1), name))
            if outputs is not None:
                outputs.add(result, name, stem)
            else:
                log(_line(result))
            bar.set_postfix({"img/s": f"{mine.count / max(1e-9, sum(mine.totals.values()) / 1e3):.1f}"})
    except KeyboardInterrupt:
        mine.interrupted = True
    finally:
        if isinstance(results, Generator):
            results.close()
        if outputs is not None:
            outputs.close()
        bar.close()
    return mine


def _gather(
    mine: _Shard,
    reading: SourceReport,
    report: SourceReport,
    run_dir: Path | None,
    info: DistInfo,
    log: Callable[[str], None],
) -> PredictRun:
    """Rank 0: every process's results in source order, ``predictions.json`` written, the summary logged."""
    merged = gather_shards(mine.entries, info)
    counts = gather_shards([(mine.count, mine.totals, reading)], info)
    if merged is None or counts is None:
        return PredictRun(run_dir, mine.count, 0, [], reading)
    predictions = _number(merged)
    images = sum(c[0] for c in counts)
    speed = {k: sum(c[1][k] for c in counts) / max(1, images) for k in mine.totals}
    for _, _, rank_reading in counts:
        report.merge(rank_reading)
    if run_dir is not None:
        (run_dir / "predictions.json").write_text(json.dumps(predictions))
    skipped_live = report.skipped.get(SKIPPED, 0)
    log(
        f"{images} images/frames"
        + (f" ({skipped_live} live frames skipped: the model was slower than the stream)" if skipped_live else "")
        + f", {len(predictions)} detections; per image: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in speed.items())
    )
    if report.skipped:
        log("\n".join(["skipped:", *report.lines()]))
    if run_dir is not None:
        log(f"results in {run_dir}")
    return PredictRun(run_dir, images, len(predictions), predictions, report, speed)


def _number(per_item: list[list[tuple[int | None, list[dict[str, Any]], str]]]) -> list[dict[str, Any]]:
    """COCO results with ``image_id`` counting the images and frames in source order, and file name and frame."""
    out = []
    image_id = 0
    for item in per_item:
        for frame, detections, name in item:
            out.extend({**d, "image_id": image_id, "file_name": name, "frame": frame} for d in detections)
            image_id += 1
    return out


def _shared_run_dir(config: PredictConfig, info: DistInfo) -> Path:
    """The run folder, chosen by rank 0 and told to the others (each then writes its own files into it)."""
    chosen = [new_run_dir(config.project, config.name, config.exist_ok) if info.is_main else None]
    if info.enabled:
        dist.broadcast_object_list(chosen, src=0)
    run_dir = Path(chosen[0])  # type: ignore[arg-type]  # chosen by rank 0, broadcast
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir
