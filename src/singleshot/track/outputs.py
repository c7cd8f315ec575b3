"""What ``singleshot track`` writes, frame by frame as results come (memory stays flat on endless streams; an
interrupted run leaves complete files):

* ``<sequence>.mp4``: the annotated video (H.264): boxes labelled ``#id class score``, trails, lines and zones with
  their counts; live streams are written at their own frame times, so the video plays in real time;
* ``<sequence>.txt``: the tracks in the MOT Challenge format ``frame,id,x,y,w,h,score,-1,-1,-1`` (1-based
  frames), which MOT evaluators read;
* ``tracks.json``: a list with one entry per frame: ``{"sequence", "frame", "seconds", "tracks": [{"id", "box"
  (xyxy pixels), "score", "label", "name"}]}``;
* ``counts.csv``: one row per frame: ``sequence, frame, seconds``, then for each line ``line<k>_<class>_in`` and
  ``_out`` (crossings so far) and for each zone ``zone<k>_<class>`` (objects inside in this frame);
* ``dwell.csv``: per zone and track, the frames and seconds it spent inside (frames of the video or stream: a
  frame skipped between two frames inside counts as inside).

A sequence is one video, one live stream, or the images of a folder (or list), named after the file, the stream's
address, or the folder (a MOT sequence's ``img1`` folder takes its parent's name).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from singleshot.boxes import xyxy_to_xywh
from singleshot.predict.live import safe_name
from singleshot.predict.result import Result
from singleshot.predict.tracking import continues
from singleshot.predict.video import VideoWriter
from singleshot.track.counting import DIRECTIONS, Line, LineCounter, Zone, ZoneCounter
from singleshot.track.drawing import Trails, draw_tracks


def sequence_name(result: Result) -> str:
    """The name of the sequence ``result`` belongs to (module docstring), safe as a file name."""
    if result.stream is not None:
        return safe_name(result.stream)  # host, port and path: never a URL's credentials
    if result.path is None:
        name = "images"
    elif result.frame is not None:
        name = result.path.stem
    else:
        folder = result.path.parent
        name = folder.parent.name if folder.name == "img1" and folder.parent.name else folder.name or "images"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "stream"


@dataclass
class TrackedSequence:
    """One sequence's counters, trails and open files."""

    name: str
    fps: float
    lines: list[LineCounter]
    zones: list[ZoneCounter]
    trails: Trails
    video: VideoWriter | None
    mot: IO[str]
    frames: int = 0
    last_frame: int | None = None  # the index of the previous frame written
    labels: dict[int, int] = field(default_factory=dict)  # track id -> its latest class label


class TrackOutputs:
    """The run folder's files (module docstring) for ``class_names``, with counting ``lines`` and ``zones``.

    Args:
        save_video: write the annotated videos (the text files are always written).
        trail: frames of trail drawn behind each track (0: none).
        fps: the frame rate of image sequences (videos and streams give their own).
    """

    def __init__(
        self,
        run_dir: Path,
        class_names: list[str],
        lines: list[Line],
        zones: list[Zone],
        *,
        save_video: bool = True,
        trail: int = 30,
        fps: float = 30.0,
        line_width: int | None = None,
    ) -> None:
        self.run_dir, self.names, self.line_specs, self.zone_specs = run_dir, class_names, lines, zones
        self.save_video, self.trail, self.fps, self.line_width = save_video, trail, fps, line_width
        self.current: TrackedSequence | None = None
        self.finished: list[TrackedSequence] = []
        self.mot_files: list[Path] = []
        self._json = (run_dir / "tracks.json").open("w")
        self._json.write("[")
        self._json_first = True
        self._counts = (run_dir / "counts.csv").open("w", newline="")
        self._csv = csv.writer(self._counts)
        self._csv.writerow(["sequence", "frame", "seconds", *self._count_columns()])
        self._previous: Result | None = None

    def _count_columns(self) -> list[str]:
        per_line = [
            f"line{k}_{n}_{d}" for k in range(1, len(self.line_specs) + 1) for n in self.names for d in DIRECTIONS
        ]
        return per_line + [f"zone{k}_{n}" for k in range(1, len(self.zone_specs) + 1) for n in self.names]

    def _open(self, result: Result) -> TrackedSequence:
        """A new sequence for ``result``'s video, stream or images; its lines and zones checked against the frame.

        Raises:
            ValueError: a line or zone outside the frame (naming it and the frame size).
        """
        h, w = result.orig_size
        for spec in (*self.line_specs, *self.zone_specs):
            spec.check_inside(w, h)
        name = sequence_name(result)
        taken = {s.name for s in self.finished}
        name = (
            next(f"{name}_{k}" for k in range(1, len(taken) + 2) if f"{name}_{k}" not in taken)
            if name in taken
            else name
        )
        fps = result.fps or self.fps
        video = VideoWriter(self.run_dir / f"{name}.mp4", fps) if self.save_video else None
        mot_path = self.run_dir / f"{name}.txt"
        self.mot_files.append(mot_path)
        return TrackedSequence(
            name, fps, [LineCounter(line, len(self.names)) for line in self.line_specs],
            [ZoneCounter(zone, len(self.names)) for zone in self.zone_specs], Trails(self.trail),
            video, mot_path.open("w"),
        )  # fmt: skip  # the fields grouped by line

    def add(self, result: Result) -> None:
        """Write one tracked frame (``result.track_ids`` set) into every file."""
        if self.current is None or not continues(self._previous, result):
            self._close_sequence()
            self.current = self._open(result)
        self._previous = result
        seq = self.current
        ids = result.track_ids if result.track_ids is not None else result.labels.new_zeros(len(result))
        frame = result.frame if result.frame is not None else seq.frames  # an image: its place in the sequence
        step = frame - seq.last_frame if seq.last_frame is not None else 1  # > 1 after skipped frames
        seq.last_frame = frame
        seconds = frame / seq.fps
        for line in seq.lines:
            line.update(ids, result.boxes, result.labels)
        for zone in seq.zones:
            zone.update(ids, result.boxes, result.labels, frames=step)
        seq.trails.update(ids, result.boxes)
        seq.labels.update(zip(ids.tolist(), result.labels.tolist(), strict=True))
        seq.frames += 1
        if seq.video is not None:
            picture = draw_tracks(result, seq.trails if self.trail else None, seq.lines, seq.zones, self.line_width)
            seq.video.write(np.asarray(picture), pts=frame if result.stream is not None else None)
        xywh = xyxy_to_xywh(result.boxes.double()).tolist()
        scores, labels = result.scores.tolist(), result.labels.tolist()
        for tid, (x, y, bw, bh), score in zip(ids.tolist(), xywh, scores, strict=True):
            seq.mot.write(f"{frame + 1},{tid},{x:.2f},{y:.2f},{bw:.2f},{bh:.2f},{score:.4f},-1,-1,-1\n")
        entry = {
            "sequence": seq.name, "frame": frame, "seconds": round(seconds, 4),
            "tracks": [
                {"id": t, "box": [round(v, 2) for v in box], "score": round(s, 4), "label": k,
                 "name": self.names[k - 1]}
                for t, box, s, k in zip(ids.tolist(), result.boxes.tolist(), scores, labels, strict=True)
            ],
        }  # fmt: skip  # one entry per frame, as written
        self._json.write(("" if self._json_first else ",") + "\n" + json.dumps(entry))
        self._json_first = False
        counts = [int(v) for c in seq.lines for v in c.counts.flatten().tolist()]
        counts += [int(v) for z in seq.zones for v in z.inside.tolist()]
        self._csv.writerow([seq.name, frame, f"{seconds:.4f}", *counts])

    def _close_sequence(self) -> None:
        seq = self.current
        if seq is None:
            return
        if seq.video is not None:
            seq.video.close()
        seq.mot.close()
        self.finished.append(seq)
        self.current = None

    def close(self) -> None:
        """Finish every file (also after an interruption): videos, MOT files, ``tracks.json``, ``counts.csv`` and
        ``dwell.csv``."""
        self._close_sequence()
        self._json.write("\n]\n")
        self._json.close()
        self._counts.close()
        with (self.run_dir / "dwell.csv").open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["sequence", "zone", "track_id", "class", "frames", "seconds"])
            for seq in self.finished:
                for k, zone in enumerate(seq.zones, start=1):
                    for tid, frames in sorted(zone.dwell.items()):
                        name = self.names[seq.labels[tid] - 1]
                        out.writerow([seq.name, k, tid, name, f"{frames:g}", f"{frames / seq.fps:.3f}"])

    def summary(self) -> dict[str, Any]:
        """Per sequence: frames written, tracks, and each line's crossings (``{class: {"in", "out"}}``)."""
        out = {}
        for seq in self.finished:
            lines = [
                {n: dict(zip(DIRECTIONS, c.counts[i].tolist(), strict=True)) for i, n in enumerate(self.names)}
                for c in seq.lines
            ]
            out[seq.name] = {"frames": seq.frames, "tracks": len(seq.labels), "lines": lines}
        return out
