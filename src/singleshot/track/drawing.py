"""Drawing tracks on a frame: each box in its track's colour labelled ``#id class score``, a short trail of the
track's recent anchor points, and the counting lines and zones with their running counts."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from singleshot.plots import draw, font_file, palette_colour
from singleshot.predict.result import Result
from singleshot.track.counting import LineCounter, ZoneCounter, anchors

#: Colours of counting lines and zones (drawn over the boxes).
LINE_COLOUR, ZONE_COLOUR = "#ffe119", "#42d4f4"


@dataclass
class Trails:
    """The last ``length`` anchor points of each track, for drawing; a track unseen for ``length`` updates is
    dropped."""

    length: int = 30
    points: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)
    _seen: dict[int, int] = field(default_factory=dict)
    _updates: int = 0

    def update(self, track_ids: Tensor, boxes_xyxy: Tensor) -> None:
        """Add one frame's ``(N,)`` track ids at their ``(N, 4)`` boxes' anchors."""
        for tid, (x, y) in zip(track_ids.tolist(), anchors(boxes_xyxy.float()).tolist(), strict=True):
            self.points.setdefault(tid, deque(maxlen=self.length)).append((x, y))
            self._seen[tid] = self._updates
        self._updates += 1
        for tid in [t for t, at in self._seen.items() if self._updates - at > self.length]:
            del self.points[tid], self._seen[tid]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = font_file()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default()


def _caption(picture: Image.Image, xy: tuple[float, float], text: str, colour: str, size: int) -> None:
    """``text`` in black on a ``colour`` box with its top-left corner at ``xy`` (kept inside the picture)."""
    canvas, font = ImageDraw.Draw(picture), _font(size)
    left, top, right, bottom = canvas.textbbox((0, 0), text, font=font)
    w, h = right - left + 6, bottom - top + 4
    width, height = picture.size
    x, y = min(max(0.0, xy[0]), max(0.0, width - w)), min(max(0.0, xy[1]), max(0.0, height - h))
    canvas.rectangle([x, y, x + w, y + h], fill=colour)
    canvas.text((x + 3 - left, y + 2 - top), text, fill="black", font=font)


def draw_tracks(
    result: Result,
    trails: Trails | None = None,
    lines: list[LineCounter] | None = None,
    zones: list[ZoneCounter] | None = None,
    line_width: int | None = None,
) -> Image.Image:
    """The frame of ``result`` (with ``track_ids``) at its original size, with the tracks, their trails, and each
    counting line (``in``/``out`` totals over classes) and zone (objects inside now) drawn."""
    image = result.original_image()
    ids = result.track_ids if result.track_ids is not None else torch.zeros(len(result), dtype=torch.int64)
    captions = [
        f"#{t} {name} {score:.2f}"
        for t, name, score in zip(ids.tolist(), result.class_names, result.scores.tolist(), strict=True)
    ]
    colours = [palette_colour(t) for t in ids.tolist()]
    drawn = draw(image, result.boxes, captions, colours, line_width)
    picture = Image.fromarray(drawn.permute(1, 2, 0).contiguous().numpy())
    canvas = ImageDraw.Draw(picture)
    side = min(result.orig_size)
    width, size = line_width or max(2, round(side / 200)), max(10, round(side / 40))
    for tid, points in (trails.points if trails else {}).items():
        if len(points) > 1:
            canvas.line(list(points), fill=palette_colour(tid), width=width)
    for k, counter in enumerate(lines or [], start=1):
        line = counter.line
        canvas.line([(line.x1, line.y1), (line.x2, line.y2)], fill=LINE_COLOUR, width=width + 1)
        going_in, going_out = counter.counts.sum(dim=0).tolist()
        quarter = (line.x1 + (line.x2 - line.x1) / 4, line.y1 + (line.y2 - line.y1) / 4)  # apart from crossing lines
        _caption(picture, quarter, f"line {k}: in {going_in}  out {going_out}", LINE_COLOUR, size)
    for k, zone in enumerate(zones or [], start=1):
        corners = list(zone.zone.points)
        canvas.polygon(corners, outline=ZONE_COLOUR, width=width)
        top_left = (min(x for x, _ in corners), min(y for _, y in corners))
        _caption(picture, top_left, f"zone {k}: {int(zone.inside.sum())} inside", ZONE_COLOUR, size)
    return picture


__all__ = ["LINE_COLOUR", "ZONE_COLOUR", "Trails", "draw_tracks"]
