"""Synthetic moving shapes: a seeded video with ground-truth track IDs, for testing and showing tracking.

Shapes of :data:`~singleshot.data.synthetic.CLASSES` (the classes of the synthetic detection set, so a detector
trained on those finds these) move in straight lines at constant speed over a fixed textured background: some are
in view at the first frame, the others enter from an edge, and each leaves when it has crossed the frame or when
the video ends. Their paths cross, so trackers meet close encounters, and a vertical bar drawn over everything
hides whatever passes behind it for a few frames (a brief full occlusion). Frame ``t`` depends only on
``(seed, t)``.

Ground truth is each object's full box in every frame where at least :data:`MIN_VISIBLE` of it is in view (inside
the frame and not behind the bar); boxes are clipped to the frame. :func:`write_mot_sequence` writes a MOT
Challenge sequence folder (``img1/000001.jpg``..., ``gt/gt.txt`` rows ``frame,id,x,y,w,h,1,1,visibility`` with
1-based frames and ids, ``seqinfo.ini``), the layout that MOT evaluators read. The class column is MOT17's scored
class (1, "pedestrian") for every object: MOT evaluators score only that class and treat some others (2, 7, 8, 12)
as distractors; the shapes' classes are in the items' ``labels``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ImageDraw
from torch import Tensor
from torch.utils.data import Dataset

from singleshot.data.images import save_image
from singleshot.data.synthetic import CLASSES, background_texture, draw_shape, random_colour, write_coco

#: Ground truth keeps a box while at least this share of it is in view (inside the frame, not behind the bar).
MIN_VISIBLE = 0.5


@dataclass(frozen=True)
class Track:
    """One object's path: ``label`` in 1..3, ``side`` in pixels, position of its box's top-left corner at frame
    ``start`` and velocity in pixels per frame, drawn from ``start`` to ``end`` (exclusive)."""

    track_id: int
    label: int
    colour: tuple[int, int, int]
    side: float
    start: int
    end: int
    x0: float
    y0: float
    vx: float
    vy: float

    def box(self, t: int) -> list[float]:
        """The full ``[x1, y1, x2, y2]`` box at frame ``t`` (may lie partly outside the frame)."""
        x, y = self.x0 + self.vx * (t - self.start), self.y0 + self.vy * (t - self.start)
        return [x, y, x + self.side, y + self.side]


class MovingShapes:
    """``num_frames`` frames of ``size`` ``(H, W)`` at ``fps`` with ``num_tracks`` moving shapes (module docstring).

    Items are ``(image uint8 [3, H, W], target)`` with ``boxes`` (N, 4) xyxy pixels clipped to the frame,
    ``labels`` (N,) int64 in 1..3, ``track_ids`` (N,) int64 from 1, and ``visibility`` (N,) float32.

    Raises:
        ValueError: fewer than 1 frame or track, sides not ``0 < min_side <= max_side``, or sides too large for
            the frame.
    """

    classes: tuple[str, ...] = CLASSES

    def __init__(
        self,
        num_frames: int = 300,
        size: tuple[int, int] = (480, 640),
        num_tracks: int = 12,
        seed: int = 0,
        fps: float = 30.0,
        min_side: float = 32.0,
        max_side: float = 64.0,
        bar_width: int = 40,
    ) -> None:
        if num_frames < 1 or num_tracks < 1:
            raise ValueError(f"need at least 1 frame and 1 track, got {num_frames} and {num_tracks}")
        if not 0 < min_side <= max_side or max_side * 2 > min(size):
            raise ValueError(f"sides {min_side}-{max_side} px: need 0 < min <= max <= half the frame's short side")
        self.num_frames, self.size, self.fps, self.seed = num_frames, size, fps, seed
        rng = np.random.default_rng([seed, 7])
        h, w = size
        self.background = background_texture(rng, h, w)
        self.bar = (int(rng.integers(w // 4, 3 * w // 4 - bar_width)), bar_width)  # (x, width)
        self.bar_colour = random_colour(rng, 0, 80)
        self.tracks = [self._track(rng, k + 1, min_side, max_side) for k in range(num_tracks)]

    def _track(self, rng: np.random.Generator, track_id: int, min_side: float, max_side: float) -> Track:
        """A random path: a third start in view at frame 0, the others enter from an edge during the video."""
        h, w = self.size
        side = float(rng.uniform(min_side, max_side))
        speed = float(rng.uniform(1.0, 4.0))
        if track_id % 3 == 1:  # in view from the first frame, heading anywhere
            start, angle = 0, rng.uniform(0, 2 * math.pi)
            x0, y0 = float(rng.uniform(0, w - side)), float(rng.uniform(0, h - side))
        else:  # enters from an edge, heading inwards (within 60 degrees of the normal)
            start = int(rng.integers(0, max(1, self.num_frames // 2)))
            edge = int(rng.integers(4))
            normal = (0.0, math.pi / 2, math.pi, 3 * math.pi / 2)[edge]  # from left, top, right, bottom
            angle = normal + rng.uniform(-math.pi / 3, math.pi / 3)
            along_x, along_y = float(rng.uniform(0, w - side)), float(rng.uniform(0, h - side))
            x0, y0 = ((-side, along_y), (along_x, -side), (float(w), along_y), (along_x, float(h)))[edge]
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        end = start + self._frames_until_gone(x0, y0, vx, vy, side)
        colour = random_colour(rng, 0, 256)
        label = int(rng.integers(len(CLASSES))) + 1
        return Track(track_id, label, colour, side, start, min(end, self.num_frames), x0, y0, vx, vy)

    def _frames_until_gone(self, x0: float, y0: float, vx: float, vy: float, side: float) -> int:
        """Frames until a box of ``side`` moving from ``(x0, y0)`` at ``(vx, vy)`` has left the frame for good."""
        h, w = self.size
        times = []
        for p, v, length in ((x0, vx, w), (y0, vy, h)):
            if v > 0:
                times.append((length - p) / v)
            elif v < 0:
                times.append((p + side) / -v)
        return math.ceil(min(times)) + 1

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, t: int) -> tuple[Tensor, dict[str, Tensor]]:
        if not 0 <= t < self.num_frames:
            raise IndexError(t)
        h, w = self.size
        canvas = self.background.copy()
        draw = ImageDraw.Draw(canvas)
        boxes, labels, ids, visible = [], [], [], []
        bar_x, bar_w = self.bar
        for track in self.tracks:
            if not track.start <= t < track.end:
                continue
            x1, y1, x2, y2 = track.box(t)
            draw_shape(draw, track.label, x1, y1, track.side, track.side, track.colour)
            cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
            if cx2 <= cx1 or cy2 <= cy1:
                continue
            hidden = max(0.0, min(cx2, bar_x + bar_w) - max(cx1, bar_x)) * (cy2 - cy1)
            share = ((cx2 - cx1) * (cy2 - cy1) - hidden) / (track.side * track.side)
            if share >= MIN_VISIBLE:
                boxes.append([cx1, cy1, cx2, cy2])
                labels.append(track.label)
                ids.append(track.track_id)
                visible.append(share)
        draw.rectangle([bar_x, 0, bar_x + bar_w - 1, h - 1], fill=self.bar_colour)
        image = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).contiguous()
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "track_ids": torch.tensor(ids, dtype=torch.int64),
            "visibility": torch.tensor(visible, dtype=torch.float32),
        }
        return image, target

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        return (self[t] for t in range(self.num_frames))


def mot_rows(video: MovingShapes) -> list[str]:
    """The ground truth as MOT Challenge rows ``frame,id,x,y,w,h,1,1,visibility`` (1-based frames; every object in
    the scored class 1, see the module docstring)."""
    rows = []
    for t in range(len(video)):
        _, target = video[t]
        for (x1, y1, x2, y2), tid, vis in zip(
            target["boxes"].tolist(), target["track_ids"].tolist(), target["visibility"].tolist(), strict=True
        ):
            rows.append(f"{t + 1},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,1,{vis:.3f}")
    return rows


def write_mot_sequence(video: MovingShapes, folder: str | Path, name: str = "shapes", quality: int = 92) -> Path:
    """Write ``video`` as a MOT Challenge sequence: ``<folder>/img1/000001.jpg``..., ``<folder>/gt/gt.txt`` and
    ``<folder>/seqinfo.ini``; returns ``folder``. ``singleshot predict --source <folder>/img1`` reads the frames."""
    folder = Path(folder)
    (folder / "img1").mkdir(parents=True, exist_ok=True)
    (folder / "gt").mkdir(exist_ok=True)
    for t in range(len(video)):
        image, _ = video[t]
        save_image(image, folder / "img1" / f"{t + 1:06d}.jpg", quality=quality)
    (folder / "gt" / "gt.txt").write_text("\n".join(mot_rows(video)) + "\n")
    h, w = video.size
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={video.fps:g}\nseqLength={len(video)}\n"
        f"imWidth={w}\nimHeight={h}\nimExt=.jpg\n"
    )
    return folder


#: Seeds of the videos :func:`write_tracking_set` trains on (its validation videos use
#: ``TRACKING_VAL_SEED + k``); the evaluation video of ``benchmarks/tracking.py`` is seed 0, in neither.
TRACKING_TRAIN_SEED, TRACKING_VAL_SEED = 1000, 2000


class TrackFrames(Dataset):
    """Every ``stride``-th frame of ``videos`` moving-shapes videos (seeds ``seed``, ``seed + 1``, ...) as a
    detection set: items ``(image uint8 [3, H, W], {"boxes", "labels"})``, for training a detector to track with.
    ``video_args`` go to :class:`MovingShapes`."""

    def __init__(self, videos: int, stride: int = 6, seed: int = TRACKING_TRAIN_SEED, **video_args: object) -> None:
        if videos < 1 or stride < 1:
            raise ValueError(f"need videos >= 1 and stride >= 1, got {videos} and {stride}")
        self.videos = [MovingShapes(seed=seed + k, **video_args) for k in range(videos)]  # type: ignore[arg-type]
        self.stride = stride
        self.per_video = math.ceil(self.videos[0].num_frames / stride)
        self.size: tuple[int, ...] = self.videos[0].size
        self.class_names = list(CLASSES)

    def __len__(self) -> int:
        return len(self.videos) * self.per_video

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        video, frame = divmod(index, self.per_video)
        image, target = self.videos[video][frame * self.stride]
        return image, {"boxes": target["boxes"], "labels": target["labels"]}


def write_tracking_set(folder: str | Path, train: int = 200, val: int = 10, stride: int = 30) -> Path:
    """Frames of moving-shapes videos as a COCO folder (``train`` videos' and ``val`` videos' every ``stride``-th
    frame: by default 10 frames of each of 200 videos, since each video has a background of its own and a detector
    trained on few backgrounds sees shapes in new ones; seeds :data:`TRACKING_TRAIN_SEED` and
    :data:`TRACKING_VAL_SEED` onwards), for ``singleshot train --config recipes/tracking.yaml``."""
    splits = {"train": TrackFrames(train, stride), "val": TrackFrames(val, stride, seed=TRACKING_VAL_SEED)}
    return write_coco(splits, folder)


__all__ = [
    "MIN_VISIBLE", "TRACKING_TRAIN_SEED", "TRACKING_VAL_SEED", "MovingShapes", "Track", "TrackFrames", "mot_rows",
    "write_mot_sequence", "write_tracking_set",
]  # fmt: skip  # a list of names
