"""``singleshot track``: detections tracked across the frames of videos, live streams or image sequences, counted
on lines and in zones, written to ``runs/track/<name>/`` (files: :mod:`singleshot.track.outputs`), and with
``--eval`` scored against MOT ground truth (:mod:`singleshot.track.scoring`).

Ctrl-C stops a run cleanly: the files written so far are finished (the video playable, the JSON closed), the
summary is printed, and :func:`run` raises :class:`~singleshot.predict.command.InterruptedRunError` carrying the
:class:`TrackRun` (the command's exit status is 130, as ``singleshot predict``'s).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from singleshot.config import Config, setting, shared
from singleshot.folders import new_run_dir
from singleshot.postprocess import PREDICT
from singleshot.predict.command import InterruptedRunError
from singleshot.predict.detector import Detector
from singleshot.predict.sources import SourceReport
from singleshot.predict.tracking import TRACKERS, TrackerSettings
from singleshot.progress import Progress
from singleshot.track.counting import Line, Zone
from singleshot.track.outputs import TrackOutputs
from singleshot.track.scoring import score_mot, summary_line


@dataclass
class TrackConfig(Config):
    """What ``singleshot track`` runs on, which tracker, what it counts and writes."""

    what: ClassVar[str] = "track"

    weights: str = shared("model_file", task="run")
    source: str = setting(
        help="video, folder of frames (one sequence, in name order), webcam (0, /dev/video0) or stream URL "
        "(rtsp://, rtmp://, udp://, http(s)://)"
    )
    tracker: Literal["bytetrack", "sort", "ocsort"] = setting(
        "bytetrack", "multi-object tracker: bytetrack (ours, batched), sort or ocsort (the trackers package's)"
    )
    track_low: float | None = setting(None, "least detection score handed to the tracker; none: the tracker's own")
    track_high: float | None = setting(None, "score from which detections are matched first; none: the tracker's")
    track_new: float | None = setting(None, "least score of a detection that starts a track; none: the tracker's")
    track_iou: float | None = setting(None, "least IoU of a track's predicted box and a detection; none: the tracker's")
    track_buffer: int | None = setting(
        None, "frames (at 30 FPS, scaled to the video's rate) a lost track is kept; none: the tracker's"
    )
    track_min_frames: int | None = setting(
        None, "consecutive matched frames before a track gets its id; none: the tracker's"
    )
    track_recover: float | None = setting(
        None, "bytetrack: share by which boxes grow to rematch tracks lost earlier (0: none); none: 0.3"
    )
    track_per_class: bool = setting(True, "bytetrack: match a track only to detections of its own class")
    iou: float = setting(PREDICT.iou, "IoU above which non-maximum suppression removes a lower-scoring box")
    max_det: int = setting(PREDICT.max_det, "most detections per frame")
    classes: list[str] | None = setting(None, "track only these classes (names, or labels 1..C); none tracks all")
    line: list[str] | None = setting(None, "counting lines x1,y1,x2,y2 in pixels (several: one after another)")
    zone: list[str] | None = setting(
        None, "counting zones x1,y1,x2,y2,x3,y3,... in pixels (several: one after another)"
    )
    trail: int = setting(30, "frames of trail drawn behind each track (0: none)")
    fps: float = setting(30.0, "frame rate of a folder of frames (videos and streams give their own)")
    eval: str | None = setting(None, "MOT ground truth (gt.txt) to score the tracks: HOTA, MOTA, IDF1, ID switches")
    batch: int = setting(8, "frames per forward pass for video files (live streams: 1, always the newest frame)")
    device: str = shared("device")
    backend: Literal["auto", "pytorch", "onnxruntime", "openvino"] = shared("backend")
    precision: Literal["auto", "fp32", "bf16", "int8"] = shared("precision")
    vid_stride: int = setting(1, "track on every n-th frame of a video file")
    timeout: float = shared("timeout")
    reconnect: int = shared("reconnect")
    save: bool = setting(True, "write the annotated videos (the text files are always written)")
    line_width: int | None = setting(None, "box line width in pixels; none scales with the image")
    project: str = shared("project", task="track")
    name: str = shared("name")
    exist_ok: bool = shared("exist_ok")

    def tracker_settings(self) -> TrackerSettings:
        """The tracker and its thresholds (``None``: the tracker paper's defaults), resolved."""
        return TrackerSettings(
            self.tracker, low=self.track_low, high=self.track_high, new_track=self.track_new,
            match_iou=self.track_iou, buffer=self.track_buffer, min_frames=self.track_min_frames,
            recover=self.track_recover, per_class=self.track_per_class,
        ).resolved()  # fmt: skip  # grouped by line

    def problems(self) -> list[str]:
        bad = [f"{k}={v}" for k, v in {"batch": self.batch, "vid_stride": self.vid_stride}.items() if v < 1]
        bad += [f"fps={self.fps}: must be positive"] * (self.fps <= 0)
        bad += [f"trail={self.trail}: must be >= 0"] * (self.trail < 0)
        for check in (
            self.tracker_settings,
            lambda: [Line.parse(t) for t in self.line or []],
            lambda: [Zone.parse(t) for t in self.zone or []],
            lambda: PREDICT.replace(iou=self.iou, max_det=self.max_det),
        ):
            try:
                check()
            except ValueError as exc:
                bad.append(str(exc))
        if self.eval is not None and not Path(self.eval).is_file():
            bad.append(f"--eval {self.eval}: no such MOT ground-truth file")
        return bad


@dataclass
class TrackRun:
    """What :func:`run` did: where it wrote, frames tracked, per sequence its tracks and line counts, the scores
    against ground truth (with ``--eval``), and whether Ctrl-C ended it."""

    run_dir: Path
    frames: int
    sequences: dict[str, Any]
    metrics: dict[str, Any] | None = None
    interrupted: bool = False
    skipped: SourceReport = field(default_factory=SourceReport)
    speed: dict[str, float] = field(default_factory=dict)  # mean milliseconds per frame


#: The stages each tracked result's ``speed`` times, in milliseconds.
STAGES = ("preprocess", "inference", "postprocess", "track")


def run(
    config: TrackConfig,
    *,
    detector: Detector | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrackRun:
    """Run ``singleshot track`` (module docstring), with ``detector`` when given (else ``config.weights`` loaded).

    Raises:
        ValueError: bad settings (all named), or a line or zone outside the frame.
        InterruptedRunError: Ctrl-C, after the files are finished (``.run`` is the :class:`TrackRun`).
    """
    config.validate()
    if detector is None:
        detector = Detector.from_weights(
            config.weights, config.device, backend=config.backend, precision=config.precision
        )
    if detector.choice is not None:
        log(detector.choice.describe())
    run_dir = new_run_dir(config.project, config.name, config.exist_ok)
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = config.tracker_settings()
    log(f"{detector.name} + {settings.tracker} on {config.source} -> {run_dir}")
    report = SourceReport()
    results = detector.track(
        config.source, tracker=settings, iou=config.iou, max_det=config.max_det, classes=config.classes,
        batch=config.batch, stream=True, vid_stride=config.vid_stride, fps=config.fps, report=report,
        timeout=config.timeout, reconnect=config.reconnect,
    )  # fmt: skip  # the options grouped by line
    outputs = TrackOutputs(
        run_dir, detector.names, [Line.parse(t) for t in config.line or []], [Zone.parse(t) for t in config.zone or []],
        save_video=config.save, trail=config.trail, fps=config.fps, line_width=config.line_width,
    )  # fmt: skip  # as above
    frames, totals, interrupted = 0, dict.fromkeys(STAGES, 0.0), False
    bar = Progress(results, total=None, desc="track", enabled=progress)
    try:
        for result in bar:
            outputs.add(result)
            frames += 1
            totals = {k: totals[k] + result.speed.get(k, 0.0) for k in STAGES}
            bar.set_postfix({"fps": f"{frames / max(1e-9, sum(totals.values()) / 1e3):.1f}"})
    except KeyboardInterrupt:
        interrupted = True
    finally:
        results.close()  # type: ignore[union-attr]  # a generator: stops a live source's reader, fills the report
        bar.close()
        outputs.close()
    done = TrackRun(run_dir, frames, outputs.summary(), None, interrupted, report)
    return _finish(config, outputs, done, totals, log)


def _finish(
    config: TrackConfig, outputs: TrackOutputs, done: TrackRun, totals: dict[str, float], log: Callable[[str], None]
) -> TrackRun:
    """Score against the ground truth (``--eval``), write ``metrics.json``, and log the summary."""
    done.speed = {k: v / max(1, done.frames) for k, v in totals.items()}
    log(f"{done.frames} frames; per frame: " + ", ".join(f"{k} {v:.1f} ms" for k, v in done.speed.items()))
    for name, seq in done.sequences.items():
        log(f"{name}: {seq['frames']} frames, {seq['tracks']} tracks")
        for k, line in enumerate(seq["lines"], start=1):
            crossed = ", ".join(f"{c} in {d['in']} out {d['out']}" for c, d in line.items() if d["in"] or d["out"])
            log(f"  line {k}: {crossed or 'no crossings'}")
    if done.skipped.skipped:
        log("\n".join(["skipped:", *done.skipped.lines()]))
    if config.eval is not None:
        if len(outputs.mot_files) != 1:
            raise ValueError(f"--eval scores one sequence; this run had {len(outputs.mot_files)}")
        done.metrics = score_mot(config.eval, outputs.mot_files[0])
        (done.run_dir / "metrics.json").write_text(json.dumps(done.metrics, indent=2))
        log(f"against {config.eval}: {summary_line(done.metrics['summary'])}")
    log(f"results in {done.run_dir}")
    if done.interrupted:
        raise InterruptedRunError(done, f"{done.frames} frames")
    return done


__all__ = ["TRACKERS", "TrackConfig", "TrackRun", "run"]
