"""Sliced inference for small objects in large images: overlapping tiles at native resolution (and, optionally, the
whole image), batched through one forward pass, their boxes shifted back to the image and merged across tiles.

A 30-pixel object of a 2000-pixel photo resized to a 300-pixel input is 5 pixels wide, below anything a default
box holds (the paper's smallest are 30 pixels of 300, section 2.2). A tile of the photo at native resolution keeps it
at 30 pixels of a tile resized to the input. Each tile (and the whole image) is post-processed as an image on its
own; then detections of *different* tiles that cover the same object are merged class by class, greedily by score:
a detection suppresses the lower-scoring ones of its class from other tiles whose intersection over the smaller
box exceeds :data:`MATCH_THRESHOLD` (an object cut by a tile border leaves a part box inside a whole one, whose IoU
is low) -- by NMS (the lower ones dropped) or by NMM (greedy non-maximum merging, as SAHI does: the kept box grows to
the union of the boxes it absorbs, its score kept). Detections of one tile never suppress each other (the
post-processor's own NMS has already run there), so an image that is a single tile gives exactly what unsliced
prediction gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from singleshot.boxes import box_area, box_intersection
from singleshot.config import SHARED
from singleshot.types import Detection

#: Intersection over the smaller box above which detections of one class from different tiles are one object.
MATCH_THRESHOLD = 0.5
#: The largest overlap between neighbouring tiles (a share of the tile side).
MAX_OVERLAP = 0.9
#: The command line's defaults (one place: :data:`singleshot.config.SHARED`), also the Python API's.
DEFAULT_OVERLAP: float = SHARED["overlap"][0]
DEFAULT_MERGE: Literal["nms", "nmm"] = SHARED["merge"][0]


@dataclass(frozen=True)
class SliceSettings:
    """How an image is sliced: ``tile`` ``(H, W)`` pixels, ``overlap`` between neighbours (share of the tile
    side, in [0, 0.9]), ``full_image`` (also run the whole image, for objects larger than a tile), ``merge``
    (``nms`` or ``nmm``, see the module docstring).

    Raises:
        ValueError: a tile side below 1, an overlap outside [0, 0.9], an unknown merge.
    """

    tile: tuple[int, int]
    overlap: float = DEFAULT_OVERLAP
    full_image: bool = True
    merge: Literal["nms", "nmm"] = DEFAULT_MERGE

    def __post_init__(self) -> None:
        if len(self.tile) != 2 or min(self.tile) < 1:
            raise ValueError(f"slice {self.tile}: a tile is (H, W) of at least 1 pixel each")
        if not 0 <= self.overlap <= MAX_OVERLAP:
            raise ValueError(f"overlap={self.overlap} must be in [0, {MAX_OVERLAP}]")
        if self.merge not in ("nms", "nmm"):
            raise ValueError(f"merge={self.merge!r} must be 'nms' or 'nmm'")

    @classmethod
    def of(
        cls,
        side: int | Sequence[int] | None,
        overlap: float = DEFAULT_OVERLAP,
        full_image: bool = True,
        merge: str = DEFAULT_MERGE,
    ) -> SliceSettings | None:
        """The settings of a ``slice`` argument (one side, or ``(H, W)``; None: no slicing, returns None)."""
        if side is None:
            return None
        tile = (side, side) if isinstance(side, int) else tuple(int(s) for s in side)
        return cls(tile, overlap, full_image, merge)  # type: ignore[arg-type]  # merge and tile are checked there


def slice_problems(side: int | None, overlap: float, full_image: bool, merge: str) -> list[str]:
    """What is wrong with a command's ``--slice`` settings (none when it does not slice), as config checks list it."""
    try:
        SliceSettings.of(side, overlap, full_image, merge)
    except ValueError as exc:
        return [str(exc)]
    return []


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets along one side: every ``tile * (1 - overlap)`` pixels (rounded down, at least 1), the last one
    flush with the border; a single start when the tile covers the side."""
    if tile >= length:
        return [0]
    step = max(1, math.floor(tile * (1 - overlap)))
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def tile_grid(height: int, width: int, settings: SliceSettings) -> Tensor:
    """``(T, 4)`` int64 xyxy pixel windows of the tiles of an ``height x width`` image, row by row; a tile larger
    than the image is clipped to it (one tile: the image itself)."""
    th, tw = settings.tile
    windows = [
        [x, y, min(x + tw, width), min(y + th, height)]
        for y in _starts(height, th, settings.overlap)
        for x in _starts(width, tw, settings.overlap)
    ]
    return torch.tensor(windows, dtype=torch.int64).reshape(-1, 4)


def windows_of(height: int, width: int, settings: SliceSettings) -> Tensor:
    """The windows run for one image: its tiles, then the whole image when ``full_image`` and it is not already
    the only tile."""
    tiles = tile_grid(height, width, settings)
    whole = torch.tensor([[0, 0, width, height]], dtype=torch.int64)
    if settings.full_image and not (len(tiles) == 1 and torch.equal(tiles, whole)):
        tiles = torch.cat([tiles, whole])
    return tiles


def _intersection_over_smaller(a_xyxy: Tensor, b_xyxy: Tensor) -> Tensor:
    """``(N, M)`` intersection area over the smaller of the two boxes' areas (0 for empty boxes)."""
    inter = box_intersection(a_xyxy, b_xyxy)
    smaller = torch.minimum(box_area(a_xyxy)[:, None], box_area(b_xyxy)[None, :])
    return torch.where(smaller > 0, inter / smaller.clamp(min=1e-12), torch.zeros_like(inter))


def merge_tiles(
    boxes: Tensor, scores: Tensor, labels: Tensor, sources: Tensor, merge: Literal["nms", "nmm"], max_det: int
) -> Detection:
    """Merge the shifted detections of one image's windows (module docstring).

    Args:
        boxes: ``(D, 4)`` xyxy pixels of the image; scores, labels: ``(D,)``; sources: ``(D,)`` the window each
            came from.
        merge: ``nms`` (drop the matched lower-scoring ones) or ``nmm`` (merge them into the kept box's union).
        max_det: detections kept, the highest scores.

    Returns:
        the image's detections, sorted by decreasing score.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores, labels, sources = boxes[order].clone(), scores[order], labels[order], sources[order]
    n = len(scores)
    match = (
        (_intersection_over_smaller(boxes, boxes) > MATCH_THRESHOLD)
        & (labels[:, None] == labels[None, :])
        & (sources[:, None] != sources[None, :])
    )
    alive = torch.ones(n, dtype=torch.bool)
    kept: list[int] = []
    for i in range(n):
        if not alive[i]:
            continue
        kept.append(i)
        absorbed = match[i] & alive
        absorbed[: i + 1] = False
        if merge == "nmm" and bool(absorbed.any()):
            group = torch.cat([boxes[i : i + 1], boxes[absorbed]])
            boxes[i] = torch.cat([group[:, :2].min(dim=0).values, group[:, 2:].max(dim=0).values])
        alive &= ~absorbed
        if len(kept) == max_det:
            break
    index = torch.tensor(kept, dtype=torch.long)
    return {"boxes": boxes[index], "scores": scores[index], "labels": labels[index]}


__all__ = [
    "DEFAULT_MERGE",
    "DEFAULT_OVERLAP",
    "MATCH_THRESHOLD",
    "MAX_OVERLAP",
    "SliceSettings",
    "merge_tiles",
    "slice_problems",
    "tile_grid",
    "windows_of",
]
