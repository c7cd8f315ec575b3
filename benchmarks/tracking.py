"""Tracking (issue 22): the tracker's own cost, detection + tracking on a live stream, and tracking quality on the
synthetic moving-shapes video.

``tracker``: milliseconds per frame of each tracker (``predict.tracking.Tracker``) at ``--objects`` objects moving
for 300 frames (seeded boxes, score 0.9), detection excluded::

    .venv/bin/python benchmarks/tracking.py tracker --objects 50

``stream``: ``ssdlite320_mobilenet_v3`` (untrained, 3 classes: the speed does not depend on the weights;
``--conf 0.5`` keeps the untrained model's detections to a realistic few) with ByteTrack on a 640x480 30 FPS live
stream of the synthetic video, sent over UDP on the loopback interface in real time by this script: frames
processed per second, frames skipped (the reader keeps only the newest), the stages' milliseconds per frame; and,
side by side on the same decoded frames, the network-only time of ours against torchvision's SSDLite carrying the
same weights::

    .venv/bin/python benchmarks/tracking.py stream --seconds 20

``accuracy``: trains ``recipes/tracking.yaml`` on frames of other moving-shapes videos (unless ``--reuse``), tracks
the evaluation video (seed 0, 300 frames, 640x480) with ``singleshot track --eval`` (each tracker, and our ByteTrack
without its two additions) and prints HOTA, IDF1, ID switches from the evaluator, and the line counts of a vertical
and a horizontal line against the ground truth's own crossings (the same counter run on the ground-truth tracks)::

    .venv/bin/python benchmarks/tracking.py accuracy [--reuse]
"""

from __future__ import annotations

import argparse
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from singleshot.convert.torchvision import to_torchvision
from singleshot.cpu import cpu_features
from singleshot.data.synthetic_tracks import MovingShapes, write_mot_sequence, write_tracking_set
from singleshot.engine import TrainConfig, train
from singleshot.models import build
from singleshot.predict import Detector
from singleshot.predict.sources import SourceReport
from singleshot.predict.tracking import TRACKERS, Tracker
from singleshot.track import Line, LineCounter
from singleshot.track.command import TrackConfig
from singleshot.track.command import run as track

LINES = ("320,0,320,480", "0,240,640,240")


def tracker_cost(args: argparse.Namespace) -> None:
    """Each tracker's milliseconds per frame at ``args.objects`` objects."""
    rng = np.random.default_rng(0)
    start = rng.uniform(0, [600, 440], size=(args.objects, 2))
    velocity = rng.uniform(-3, 3, size=(args.objects, 2))
    sides = rng.uniform(20, 40, size=(args.objects, 1))
    print(cpu_features().describe())
    for kind in TRACKERS:
        tracker = Tracker(kind, fps=30)
        for t in range(300):
            xy = start + velocity * t
            boxes = torch.from_numpy(np.concatenate([xy, xy + sides], axis=1)).float()
            detection = {
                "boxes": boxes,
                "scores": torch.full((args.objects,), 0.9),
                "labels": torch.ones(args.objects, dtype=torch.int64),
            }
            tracker.update(detection, t / 30)  # type: ignore[arg-type]  # a Detection
        alive = len(tracker.alive())
        print(f"{kind:10s} {args.objects} objects: {tracker.ms / 300:.3f} ms per frame (300 frames, {alive} alive)")


class VideoStream:
    """``video``'s frames sent in real time to ``url`` (H.264 in MPEG-TS over UDP, zero-latency x264), looping."""

    def __init__(self, video: MovingShapes, url: str) -> None:
        self.frames = [video[t][0].permute(1, 2, 0).contiguous().numpy() for t in range(len(video))]
        self.url, self.fps, self.sent = url, video.fps, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        out = av.open(f"{self.url}?pkt_size=1316", mode="w", format="mpegts", options={"omit_video_pes_length": "0"})
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = out.add_stream("libx264", rate=rate)
        stream.height, stream.width = self.frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "15", "bf": "0"}
        begin = time.monotonic()
        while not self._stop.is_set():
            time.sleep(max(0.0, begin + self.sent / self.fps - time.monotonic()))
            frame = av.VideoFrame.from_ndarray(self.frames[self.sent % len(self.frames)], format="rgb24")
            frame.pts, frame.time_base = self.sent, 1 / rate
            for packet in stream.encode(frame):
                out.mux(packet)
            self.sent += 1
        out.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def stream_speed(args: argparse.Namespace) -> None:
    """SSDLite + ByteTrack on a 640x480 30 FPS loopback stream; network time against torchvision's."""
    torch.manual_seed(0)
    model = build("ssdlite320_mobilenet_v3", 3)
    detector = Detector(model, list(MovingShapes.classes))
    video = MovingShapes(num_frames=300, seed=0)
    print(cpu_features().describe())
    url = f"udp://127.0.0.1:{args.port}"
    sender = VideoStream(video, url)
    report = SourceReport()
    results = detector.track(
        url, tracker="bytetrack", conf=args.conf, stream=True, timeout=5, reconnect=0, report=report
    )
    stages: dict[str, float] = {}
    count, warm, start = 0, False, time.perf_counter()
    for result in results:  # type: ignore[union-attr]  # stream=True: an iterator
        count += 1
        for k, v in result.speed.items():
            stages[k] = stages.get(k, 0.0) + v
        if not warm and count == 10:  # warm-up done: restart the clock
            stages, count, warm, start = {}, 0, True, time.perf_counter()
        if warm and time.perf_counter() - start > args.seconds:
            break
    elapsed = time.perf_counter() - start
    results.close()  # type: ignore[union-attr]  # a generator: closes the reader
    sender.stop()
    print(
        f"stream 640x480 @ {video.fps:g} FPS, {elapsed:.1f} s: {count / elapsed:.1f} frames/s tracked; "
        + ", ".join(f"{k} {v / max(1, count):.2f} ms" for k, v in stages.items())
    )
    print("reader:", "; ".join(report.lines()) or "nothing skipped")
    # the network alone, ours against torchvision's on the same weights and the same decoded frames
    reference = to_torchvision(model).eval()
    frames = [video[t][0] for t in range(0, 300, 10)]
    with torch.no_grad():
        for _ in range(2):
            ours_ms = _time(lambda im: detector.detect([im]), frames)
            theirs_ms = _time(lambda im: reference([im.float() / 255]), frames)
    ratio = ours_ms / theirs_ms
    print(
        f"decoded frames, batch 1: ours {ours_ms:.1f} ms, torchvision {theirs_ms:.1f} ms per frame, ratio {ratio:.2f}"
    )


def _time(step: object, frames: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    for im in frames:
        step(im)  # type: ignore[operator]  # a callable
    return (time.perf_counter() - start) * 1e3 / len(frames)


def accuracy(args: argparse.Namespace) -> None:
    """Train on other videos' frames, track the evaluation video, score it and count lines against the truth."""
    weights = Path("runs/train/tracking/weights/best.safetensors")
    if not args.reuse or not weights.is_file():
        write_tracking_set("runs/data/tracking")
        weights = train(TrainConfig.from_yaml("recipes/tracking.yaml")).run_dir / "weights" / "best.safetensors"
    video = MovingShapes(num_frames=300, seed=0)
    sequence = write_mot_sequence(video, "runs/data/track_eval/shapes")
    print(cpu_features().describe())
    variants = {  # name: (tracker, per-class, recover); None: the tracker's default
        "bytetrack": ("bytetrack", True, None),
        "bytetrack as the paper": ("bytetrack", False, 0.0),
        "bytetrack per-class only": ("bytetrack", True, 0.0),
        "sort": ("sort", True, None),
        "ocsort": ("ocsort", True, None),
    }
    for name, (kind, per_class, recover) in variants.items():
        config = TrackConfig(
            str(weights), str(sequence / "img1"), tracker=kind, track_per_class=per_class, track_recover=recover,
            line=list(LINES), eval=str(sequence / "gt" / "gt.txt"), name=f"eval_{name.replace(' ', '_')}",
            exist_ok=True, save=name == "bytetrack",
        )  # fmt: skip
        done = track(config, progress=False, log=lambda s: None)
        assert done.metrics is not None
        s = done.metrics["summary"]
        print(
            f"{name:25s} HOTA {s['HOTA'] * 100:.1f}  IDF1 {s['IDF1'] * 100:.1f}  MOTA {s['MOTA'] * 100:.1f}  "
            f"IDSW {s['IDSW']}  ({done.speed['track']:.2f} ms/frame in the tracker)"
        )
        truth = [LineCounter(Line.parse(line), 3) for line in LINES]
        for t in range(len(video)):
            target = video[t][1]
            for counter in truth:
                counter.update(target["track_ids"], target["boxes"], target["labels"])
        for k, counter in enumerate(truth):
            ours = done.sequences["shapes"]["lines"][k]
            counted = [[ours[c]["in"], ours[c]["out"]] for c in video.classes]
            same = "equal" if counted == counter.counts.tolist() else "DIFFERENT"
            print(
                f"  line {LINES[k]}: ours {counted}, ground truth {counter.counts.tolist()} (in, out per class): {same}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    cost = sub.add_parser("tracker")
    cost.add_argument("--objects", type=int, default=50)
    live = sub.add_parser("stream")
    live.add_argument("--seconds", type=float, default=20.0)
    live.add_argument("--port", type=int, default=47123)
    live.add_argument("--conf", type=float, default=0.5)
    acc = sub.add_parser("accuracy")
    acc.add_argument("--reuse", action="store_true", help="use runs/train/tracking's weights when they exist")
    args = parser.parse_args()
    {"tracker": tracker_cost, "stream": stream_speed, "accuracy": accuracy}[args.what](args)


if __name__ == "__main__":
    main()
