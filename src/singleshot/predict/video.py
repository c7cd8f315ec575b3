"""Writing annotated videos: H.264 in MP4 through PyAV (its wheels bundle FFmpeg with libx264), so the files play
in browsers. Frames are encoded as they come: memory stays flat however long the video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoWriter:
    """An MP4 file at ``fps`` frames per second; :meth:`write` takes ``H x W x 3`` uint8 RGB frames of one size
    (an odd width or height loses its last column or row: H.264's 4:2:0 colour needs even sides), each shown
    ``1 / fps`` s after the one before, or at its own ``pts`` (in frames of ``1 / fps`` s, counted from the first
    frame's) when given: a live stream's frames at their index in the stream, so the video plays in real time despite
    the frames skipped."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), mode="w")
        self.rate = Fraction(fps).limit_denominator(1001)
        self.stream = None
        self.frames = 0
        self.pts = -1  # the last frame's
        self.origin: int | None = None  # the first pts given

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Add a frame; ``pts`` (default: the number of frames written before) is counted from the first ``pts``
        given, and raised to one more than the previous frame's when lower, since a video's timestamps increase."""
        h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = w, h
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "23", "preset": "veryfast"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        if pts is not None and self.origin is None:
            self.origin = pts
        self.pts = max(self.frames if pts is None else pts - (self.origin or 0), self.pts + 1)
        frame.pts = self.pts
        frame.time_base = 1 / self.rate
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():  # flush the encoder
                self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
