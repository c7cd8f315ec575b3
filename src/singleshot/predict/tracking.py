"""Tracking by detection: each frame's detections handed to a multi-object tracker that keeps one id per object
across frames: our ByteTrack (:mod:`singleshot.predict.bytetrack`, every track's Kalman filter in one batch), or
the ``trackers`` package's SORT and OC-SORT (Roboflow's clean-room implementations; Apache-2.0).

All work on boxes: a Kalman filter predicts each track's box, and an optimal assignment on IoU matches predictions
to detections (ByteTrack also by class, with ``per_class``; the package's trackers are class-agnostic). They take
each frame's timestamp, so frames skipped by a live source (or by ``--vid-stride``) are predicted across rather
than treated as one step. A track gets its id once it has been matched in ``min_frames`` consecutive frames;
detections not (yet) in a confirmed track are dropped from the output.

:class:`TrackerSettings` holds the knobs with each tracker paper's defaults (:data:`PAPER_DEFAULTS`); the track
buffer is in frames at 30 FPS and scales with the video's frame rate, as in ByteTrack's code.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from singleshot.predict.bytetrack import ByteTrack
from singleshot.predict.result import Result
from singleshot.types import Detection

TrackerName = Literal["bytetrack", "sort", "ocsort"]
#: The trackers ``--tracker`` offers.
TRACKERS: tuple[str, ...] = get_args(TrackerName)

#: Each tracker's defaults, from its paper where the paper gives them, else the ``trackers`` package's:
#:
#: * ByteTrack (Zhang et al., ECCV 2022, Sec. 4.1): high-score threshold 0.6, low 0.1, a new track from a
#:   detection above 0.7 (high + 0.1), first-association IoU 0.2 (their "0.8" is a distance), 30-frame buffer;
#:   a track is confirmed when it is matched on the frame after its birth (2 frames).
#: * SORT (Bewley et al., ICIP 2016, Sec. 3.3-3.4): IoU_min 0.3, confirmed after 3 frames (the public code's
#:   min_hits), a track deleted after 1 missed frame (T_lost = 1; a buffer of 2 here, because the package,
#:   given frame times, deletes a track with a buffer of 1 at the very frame it is due, the same tracks as
#:   T_lost = 1 without times); the low and new-track thresholds are the package's.
#: * OC-SORT (Cao et al., CVPR 2023, Sec. 4.1 and code): detection threshold 0.6, IoU 0.3, 30-frame buffer,
#:   delta_t 3, inertia (direction consistency) weight 0.2, confirmed after 3 frames; low detections down to 0.1
#:   are used in its BYTE-style second association.
#:
#: Two additions of ours, for ByteTrack only (the others are the package's, class-agnostic): ``per_class``
#: matching, and ``recover`` 0.3 (C-BIoU's smaller buffer, Yang et al., WACV 2023); on the synthetic tracking video
#: with the tiny SSD of ``recipes/tracking.yaml`` they raise IDF1 from 0.843 to 0.921 (``benchmarks/RESULTS.md``).
#: ``per_class=False, recover=0`` is the paper's ByteTrack.
PAPER_DEFAULTS: dict[str, dict[str, float | int]] = {
    "bytetrack": {
        "low": 0.1, "high": 0.6, "new_track": 0.7, "match_iou": 0.2, "buffer": 30, "min_frames": 2, "recover": 0.3,
    },
    "sort": {
        "low": 0.25, "high": 0.25, "new_track": 0.25, "match_iou": 0.3, "buffer": 2, "min_frames": 3, "recover": 0,
    },
    "ocsort": {
        "low": 0.1, "high": 0.6, "new_track": 0.6, "match_iou": 0.3, "buffer": 30, "min_frames": 3, "recover": 0,
    },
}  # fmt: skip  # one tracker per line


@dataclass(frozen=True)
class TrackerSettings:
    """A tracker and its thresholds; ``None`` fields take the tracker's paper default (:data:`PAPER_DEFAULTS`,
    see :meth:`resolved`).

    Attributes:
        tracker: ``bytetrack``, ``sort`` or ``ocsort``.
        low: least detection score handed to the tracker (the detector runs at this confidence).
        high: detections at least this score are matched first (ByteTrack, OC-SORT); the rest only revive tracks.
        new_track: least score of a detection that starts a track (ByteTrack, SORT; OC-SORT uses ``high``).
        match_iou: least IoU between a track's predicted box and a detection for a match.
        buffer: frames (at 30 FPS; scaled by the video's rate) a lost track is kept for re-identification.
        min_frames: consecutive matched frames before a track is confirmed and gets its id.
        recover: ByteTrack: grow boxes by this share to match tracks lost since an earlier frame to the detections
            left (:class:`~singleshot.predict.bytetrack.ByteTrack`); 0: none.
        per_class: ByteTrack: match a track only to detections of its own class.
    """

    tracker: TrackerName = "bytetrack"
    low: float | None = None
    high: float | None = None
    new_track: float | None = None
    match_iou: float | None = None
    buffer: int | None = None
    min_frames: int | None = None
    recover: float | None = None
    per_class: bool = True

    def resolved(self) -> TrackerSettings:
        """These settings with each ``None`` replaced by the tracker's default.

        Raises:
            ValueError: an unknown tracker (listing the choices) or a setting out of range.
        """
        if self.tracker not in PAPER_DEFAULTS:
            raise ValueError(f"unknown tracker '{self.tracker}'; choose one of {', '.join(TRACKERS)}")
        defaults = PAPER_DEFAULTS[self.tracker]
        out = dataclasses.replace(
            self, **{k: defaults[k] for k, v in dataclasses.asdict(self).items() if v is None and k in defaults}
        )
        for name in ("low", "high", "new_track", "match_iou", "recover"):
            value = getattr(out, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"tracker setting {name}={value}: must be in [0, 1]")
        if out.buffer < 0 or out.min_frames < 1:  # type: ignore[operator]  # resolved: not None
            raise ValueError(f"tracker settings buffer={out.buffer} (>= 0), min_frames={out.min_frames} (>= 1)")
        if out.low > out.high:  # type: ignore[operator]  # resolved: not None
            raise ValueError(f"tracker settings low={out.low} above high={out.high}")
        return out


def _library_tracker(s: TrackerSettings, fps: float) -> Any:
    """The ``trackers`` package's SORT or OC-SORT for resolved settings ``s`` at ``fps`` (ByteTrack is ours)."""
    # imported on first use: trackers (with supervision) costs 0.6 s that predict, serve and --help need not pay
    import trackers

    common = {"lost_track_buffer": s.buffer, "frame_rate": fps, "minimum_consecutive_frames": s.min_frames}
    if s.tracker == "sort":
        return trackers.SORTTracker(**common, track_activation_threshold=s.new_track, minimum_iou_threshold=s.match_iou)
    return trackers.OCSORTTracker(**common, minimum_iou_threshold=s.match_iou, high_conf_det_threshold=s.high)


def continues(previous: Result | None, result: Result) -> bool:
    """Whether ``result`` belongs to the same sequence as ``previous``: the next frame of the same video or stream
    (a frame index that does not increase starts a new one: the video again), or another image after an image
    (the images of a folder or list are one sequence, in order)."""
    if previous is None:
        return False
    if result.frame is None or previous.frame is None:
        return result.frame is None and previous.frame is None
    return (result.path, result.stream) == (previous.path, previous.stream) and result.frame > previous.frame


class Tracker:
    """One video's (or stream's) tracker: :meth:`update` with each frame's detections, in order.

    Args:
        settings: the tracker and its thresholds (``None`` fields: the paper's defaults).
        fps: the video's frame rate (scales the track buffer; gives times to frames without a timestamp).
    """

    def __init__(self, settings: TrackerSettings | str = "bytetrack", fps: float = 30.0) -> None:
        settings = TrackerSettings(settings) if isinstance(settings, str) else settings  # type: ignore[arg-type]
        self.settings = settings.resolved()
        if not fps > 0:
            raise ValueError(f"frame rate must be positive, got {fps}")
        self.fps = fps
        self.ms = 0.0  # time spent in the tracker, summed over frames
        s = self.settings
        if s.tracker == "bytetrack":  # ours: every track's Kalman filter in one batch (singleshot.predict.bytetrack)
            self._ours: ByteTrack | None = ByteTrack(
                s.high, s.new_track, s.match_iou, s.buffer, s.min_frames, fps, s.recover,  # type: ignore[arg-type]
            )  # fmt: skip  # resolved settings: no None left
            return
        self._ours = None
        self._library = _library_tracker(s, fps)
        # loaded with the tracker above (0.6 s on first use): its input type
        from supervision import Detections

        self._detections = Detections

    def update(self, detection: Detection, seconds: float | None = None) -> tuple[Tensor, Tensor]:
        """Match one frame's detections (``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` (N,)) to the
        tracks; ``seconds`` is the frame's time in the video (None: one frame after the previous call).

        Returns:
            ``(kept, track_ids)``: indices ``(K,)`` into the detections that belong to a confirmed track, in the
            input order, and their track ids ``(K,)`` int64, counting from 1.
        """
        start = time.perf_counter()
        if self._ours is not None:
            boxes, scores = detection["boxes"].double().numpy().reshape(-1, 4), detection["scores"].numpy()
            labels = detection["labels"].numpy() if self.settings.per_class else None
            ids = self._ours.update(boxes, scores, seconds, labels)
            kept = torch.from_numpy(np.flatnonzero(ids > 0))
            self.ms += (time.perf_counter() - start) * 1e3
            return kept, torch.from_numpy(ids[kept.numpy()])
        n = len(detection["scores"])
        given = self._detections(
            xyxy=detection["boxes"].double().numpy().reshape(-1, 4),
            confidence=detection["scores"].double().numpy(),
            class_id=detection["labels"].numpy().astype(int),
            data={"index": np.arange(n)},
        )
        tracked = self._library.update(given, timestamp=seconds)
        index = np.asarray(tracked.data.get("index", np.empty(0, dtype=int)), dtype=np.int64)
        ids = np.asarray(tracked.tracker_id if tracked.tracker_id is not None else [], dtype=np.int64)
        confirmed = ids >= 0
        order = np.argsort(index[confirmed], kind="stable")
        kept = torch.from_numpy(index[confirmed][order])
        track_ids = torch.from_numpy(ids[confirmed][order] + 1)
        self.ms += (time.perf_counter() - start) * 1e3
        return kept, track_ids

    def alive(self) -> set[int]:
        """Ids (from 1) of the confirmed tracks the tracker still holds, lost ones within the buffer included."""
        if self._ours is not None:
            return self._ours.alive()
        held = getattr(self._library, "tracks", None) or getattr(self._library, "trackers", [])
        return {int(t.tracker_id) + 1 for t in held if t.tracker_id >= 0}


__all__ = ["PAPER_DEFAULTS", "TRACKERS", "Tracker", "TrackerName", "TrackerSettings", "continues"]
