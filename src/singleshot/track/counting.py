"""Counting tracked objects: crossings of lines and occupancy of zones, on each track's anchor point (its box
centre), frame by frame, whatever tracker made the tracks.

A track crosses a :class:`Line` when its anchor moves from one side of the line to the other and the step between
the two positions meets the line's segment (a step that passes beyond the segment's ends does not count). A point
exactly on the line belongs to neither side: the crossing is counted when the anchor reaches the other side.
Directions: looking along the line from ``(x1, y1)`` to ``(x2, y2)`` as drawn on the image (y pointing down),
``in`` is from its left-hand side to its right-hand side, ``out`` the other way; for a line drawn left to right,
``in`` is downwards. Each crossing counts, so a track that crosses back counts once each way. A crossing counts
once the anchor has been on the new side in ``min_frames`` consecutive updates (2 by default): a box whose centre
jitters across the line for a frame, as one does while its object leaves the image along the line, counts nothing.

A :class:`Zone` is a polygon; a track is inside when its anchor is (even-odd rule). Per frame, the objects inside
are counted per class, and each track's frames inside accumulate into its dwell time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from singleshot.boxes import xyxy_to_cxcywh

#: The two directions of a line crossing, in the order of :attr:`LineCounter.counts`' columns.
DIRECTIONS = ("in", "out")


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ValueError(f"{what} '{text}': expected comma-separated numbers") from None


def _check_inside(points: tuple[tuple[float, float], ...], width: int, height: int, name: str) -> None:
    """Raise ValueError, naming ``name``, at the first point outside a ``width x height`` frame (its border is in)."""
    for x, y in points:
        if not (0 <= x <= width and 0 <= y <= height):
            raise ValueError(f"{name}: ({x:g}, {y:g}) is outside the {width}x{height} frame")


def anchors(boxes_xyxy: Tensor) -> Tensor:
    """The anchor point of each ``(N, 4)`` xyxy box: its centre, ``(N, 2)``."""
    return xyxy_to_cxcywh(boxes_xyxy)[:, :2]


@dataclass(frozen=True)
class Line:
    """A counting line from ``(x1, y1)`` to ``(x2, y2)`` in image pixels."""

    x1: float
    y1: float
    x2: float
    y2: float

    @classmethod
    def parse(cls, text: str) -> Line:
        """``"x1,y1,x2,y2"`` (``--line``); raises ValueError on anything else or a line of zero length."""
        values = _numbers(text, "line")
        if len(values) != 4:
            raise ValueError(f"line '{text}': expected x1,y1,x2,y2 (4 numbers), got {len(values)}")
        line = cls(*values)
        if (line.x1, line.y1) == (line.x2, line.y2):
            raise ValueError(f"line '{text}': its two ends are the same point")
        return line

    def check_inside(self, width: int, height: int) -> None:
        """Raise ValueError, naming the line, when an end lies outside a ``width x height`` frame."""
        name = f"line {self.x1:g},{self.y1:g},{self.x2:g},{self.y2:g}"
        _check_inside(((self.x1, self.y1), (self.x2, self.y2)), width, height, name)

    def side(self, points: Tensor) -> Tensor:
        """Which side of the line each ``(N, 2)`` point is on: +1 right-hand (see module docstring), -1 left, 0 on
        it, ``(N,)`` int64."""
        cross = (self.x2 - self.x1) * (points[:, 1] - self.y1) - (self.y2 - self.y1) * (points[:, 0] - self.x1)
        return torch.sign(cross).long()

    def meets(self, start: tuple[float, float], end: tuple[float, float]) -> bool:
        """Whether the step from ``start`` to ``end`` meets the line's segment (the step's own line separates, or
        touches, the segment's two ends)."""
        (sx, sy), (ex, ey) = start, end
        a = (ex - sx) * (self.y1 - sy) - (ey - sy) * (self.x1 - sx)
        b = (ex - sx) * (self.y2 - sy) - (ey - sy) * (self.x2 - sx)
        return a * b <= 0


@dataclass
class _Side:
    """A track's state at a line: the side it is known to be on and the last point there, and the other side it
    may be crossing to (how many updates in a row, from which point)."""

    side: int
    point: tuple[float, float]
    seen: int  # the update that last saw the track
    candidate: int = 0
    since: int = 0
    start: tuple[float, float] = (0.0, 0.0)


@dataclass
class LineCounter:
    """Crossings of ``line`` per class: ``counts`` ``(num_classes, 2)`` int64, columns :data:`DIRECTIONS`, row
    ``label - 1``. A crossing counts when the track has been on the new side in ``min_frames`` consecutive updates
    (module docstring). A track unseen for ``forget_after`` updates is forgotten (memory stays flat on an endless
    stream; a tracker has long dropped it by then)."""

    line: Line
    num_classes: int
    min_frames: int = 2
    forget_after: int = 900
    counts: Tensor = field(init=False)
    _tracks: dict[int, _Side] = field(init=False, default_factory=dict)
    _updates: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")
        self.counts = torch.zeros(self.num_classes, 2, dtype=torch.int64)

    def update(self, track_ids: Tensor, boxes_xyxy: Tensor, labels: Tensor) -> list[tuple[int, int, str]]:
        """One frame's tracks (``(N,)`` ids, ``(N, 4)`` xyxy boxes, ``(N,)`` labels in 1..C); returns the
        crossings counted in this frame as ``(track id, label, direction)``."""
        points = anchors(boxes_xyxy.float())
        sides = self.line.side(points).tolist()
        events = []
        for tid, label, side, (x, y) in zip(track_ids.tolist(), labels.tolist(), sides, points.tolist(), strict=True):
            known = self._tracks.get(tid)
            if known is None:
                if side != 0:
                    self._tracks[tid] = _Side(side, (x, y), self._updates)
                continue
            known.seen = self._updates
            if side == 0:  # on the line: wait until it is on a side
                continue
            if side == known.side:
                known.point, known.candidate = (x, y), 0
                continue
            if known.candidate != side:
                known.candidate, known.since, known.start = side, 0, (x, y)
            known.since += 1
            if known.since >= self.min_frames:
                if self.line.meets(known.point, known.start):
                    direction = 0 if side > 0 else 1  # left to right is "in"
                    self.counts[label - 1, direction] += 1
                    events.append((tid, label, DIRECTIONS[direction]))
                known.side, known.point, known.candidate = side, (x, y), 0
        self._updates += 1
        if self._updates % 100 == 0:
            self._tracks = {t: v for t, v in self._tracks.items() if self._updates - v.seen <= self.forget_after}
        return events

    @property
    def remembered(self) -> int:
        """How many tracks' sides are held."""
        return len(self._tracks)


@dataclass(frozen=True)
class Zone:
    """A counting zone: a polygon of at least three ``(x, y)`` points in image pixels."""

    points: tuple[tuple[float, float], ...]

    @classmethod
    def parse(cls, text: str) -> Zone:
        """``"x1,y1,x2,y2,x3,y3,..."`` (``--zone``); raises ValueError on an odd count or fewer than 3 points."""
        values = _numbers(text, "zone")
        if len(values) % 2 or len(values) < 6:
            raise ValueError(f"zone '{text}': expected at least 3 points as x1,y1,x2,y2,x3,y3,... ({len(values)} "
                             f"numbers)")  # fmt: skip  # one message
        return cls(tuple((values[i], values[i + 1]) for i in range(0, len(values), 2)))

    def check_inside(self, width: int, height: int) -> None:
        """Raise ValueError, naming the zone, when a corner lies outside a ``width x height`` frame."""
        _check_inside(self.points, width, height, f"zone {self.describe()}")

    def describe(self) -> str:
        return ",".join(f"{x:g},{y:g}" for x, y in self.points)

    def contains(self, points: Tensor) -> Tensor:
        """Whether each ``(N, 2)`` point is inside the polygon (even-odd rule), ``(N,)`` bool."""
        corners = torch.tensor(self.points, dtype=torch.float64)
        a, b = corners, corners.roll(-1, dims=0)  # (E, 2): each edge from a to b
        x, y = points[:, None, 0].double(), points[:, None, 1].double()  # (N, 1)
        straddles = (a[:, 1] > y) != (b[:, 1] > y)  # (N, E): the edge spans the point's height
        dy = torch.where(b[:, 1] == a[:, 1], torch.ones_like(b[:, 1]), b[:, 1] - a[:, 1])
        x_at = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy  # where the edge is at the point's height
        return ((straddles & (x < x_at)).sum(dim=1) % 2).bool()


@dataclass
class ZoneCounter:
    """Occupancy of ``zone``: ``inside`` per class in the last frame, ``(num_classes,)`` int64; ``dwell`` frames
    inside per track id (over the whole run; a track inside at an update adds the frames since the previous one)."""

    zone: Zone
    num_classes: int
    inside: Tensor = field(init=False)
    dwell: dict[int, float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.inside = torch.zeros(self.num_classes, dtype=torch.int64)

    def update(self, track_ids: Tensor, boxes_xyxy: Tensor, labels: Tensor, frames: float = 1.0) -> Tensor:
        """One frame's tracks (as :meth:`LineCounter.update`), ``frames`` after the previous update (more than 1
        when a live source or a stride skipped some); returns the objects inside per class, ``(C,)``."""
        inside = self.zone.contains(anchors(boxes_xyxy.float()))
        self.inside = torch.bincount(labels[inside] - 1, minlength=self.num_classes)[: self.num_classes]
        for tid in track_ids[inside].tolist():
            self.dwell[tid] = self.dwell.get(tid, 0) + frames
        return self.inside

    def dwell_seconds(self, fps: float) -> dict[int, float]:
        """Each track's time inside, in seconds at ``fps`` frames per second."""
        return {tid: frames / fps for tid, frames in self.dwell.items()}


__all__ = ["DIRECTIONS", "Line", "LineCounter", "Zone", "ZoneCounter", "anchors"]
