""":class:`Result`: the detections of one image or video frame, with pictures and exports."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from singleshot.boxes import xyxy_to_xywh
from singleshot.data.images import read_image
from singleshot.plots import draw_detections
from singleshot.types import Detection


@dataclass
class Result:
    """Detections of one image (or video frame), in the original image's pixels.

    ``boxes`` (N, 4) float xyxy, ``scores`` (N,), ``labels`` (N,) int64 in 1..C (``names[label - 1]`` is the
    class), sorted by decreasing score. ``orig_size`` is ``(H, W)``; ``speed`` holds milliseconds per image for
    ``preprocess`` (reading, resizing, normalising), ``inference`` (the network) and ``postprocess``.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    _: KW_ONLY
    names: list[str]
    orig_size: tuple[int, int]
    path: Path | None = None
    frame: int | None = None
    fps: float | None = None  # the video's frame rate, for video frames
    stream: str | None = None  # a live source's address as given (webcam index, device or URL); path is then None
    track_ids: Tensor | None = None  # (N,) int64 ids >= 1 of the tracks the detections belong to (Detector.track)
    speed: dict[str, float] = field(default_factory=dict)
    image: Tensor | None = field(default=None, repr=False)  # uint8 [3, h, w] as read (maybe a reduced decode)
    reload: Callable[[], Tensor] | None = field(default=None, repr=False)  # the full-size image, when reduced

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def detection(self) -> Detection:
        return Detection(boxes=self.boxes, scores=self.scores, labels=self.labels)

    @property
    def class_names(self) -> list[str]:
        """The class name of each detection."""
        return [self.names[i - 1] for i in self.labels.tolist()]

    # -- pictures ---------------------------------------------------------------------------------------
    def original_image(self) -> Tensor:
        """The image at its original size, uint8 ``[3, H, W]`` (read again from its file if it was decoded at a
        reduced scale)."""
        if self.image is not None and tuple(self.image.shape[1:]) == tuple(self.orig_size):
            return self.image
        if self.reload is not None:
            return self.reload()
        if self.path is not None and self.frame is None:
            return read_image(self.path)
        raise ValueError("this result holds no image to draw on (predict keeps each image in its result)")

    def plot(self, conf: float | None = None, line_width: int | None = None) -> Image.Image:
        """The original image with the detections scoring at least ``conf`` (default: all) drawn and labelled."""
        drawn = draw_detections(self.original_image(), self.detection, self.names, conf or 0.0, line_width)
        return Image.fromarray(drawn.permute(1, 2, 0).contiguous().numpy())

    def save(self, path: str | Path, conf: float | None = None, line_width: int | None = None) -> Path:
        """Write :meth:`plot` to ``path`` (format from the suffix); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.plot(conf, line_width).save(path, quality=90)
        return path

    def crops(self) -> list[tuple[str, Image.Image]]:
        """Each detection's region of the original image, with its class name."""
        image = self.original_image()
        h, w = image.shape[1:]
        out = []
        for name, box in zip(self.class_names, self.boxes.tolist(), strict=True):
            x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
            x2, y2 = min(w, max(x1 + 1, round(box[2]))), min(h, max(y1 + 1, round(box[3])))
            out.append((name, Image.fromarray(image[:, y1:y2, x1:x2].permute(1, 2, 0).contiguous().numpy())))
        return out

    # -- exports ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: where the image came from, its size, the speed, and each detection (with its ``track_id``
        when tracked)."""
        return {
            "path": None if self.path is None else str(self.path),
            "frame": self.frame,
            "orig_size": list(self.orig_size),
            "speed": self.speed,
            "detections": [
                {"box": box, "score": score, "label": label, "name": self.names[label - 1]}
                | ({} if track_id is None else {"track_id": track_id})
                for box, score, label, track_id in zip(
                    self.boxes.tolist(), self.scores.tolist(), self.labels.tolist(), self._track_id_list(), strict=True
                )
            ],
        }

    def _track_id_list(self) -> list[int | None]:
        return [None] * len(self) if self.track_ids is None else self.track_ids.tolist()

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_coco(self, image_id: int, category_ids: list[int] | None = None) -> list[dict[str, Any]]:
        """The detections in the COCO results format: ``{"image_id", "category_id", "bbox" [x, y, w, h], "score"}``
        (``category_id`` is the label 1..C unless ``category_ids`` gives the id of each label)."""
        boxes = xyxy_to_xywh(self.boxes.double()).tolist()
        return [
            {
                "image_id": image_id,
                "category_id": label if category_ids is None else category_ids[label - 1],
                "bbox": box,
                "score": score,
            }
            for box, score, label in zip(boxes, self.scores.tolist(), self.labels.tolist(), strict=True)
        ]

    def to_yolo_txt(self) -> str:
        """YOLO label lines ``class cx cy w h conf`` (class 0-based, box normalised by the image size)."""
        h, w = self.orig_size
        scale = torch.tensor([w, h, w, h], dtype=torch.float64)
        b = self.boxes.double() / scale
        cxcywh = torch.stack(
            [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1
        )
        lines = [
            f"{label - 1} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f} {score:.5f}"
            for (cx, cy, bw, bh), label, score in zip(
                cxcywh.tolist(), self.labels.tolist(), self.scores.tolist(), strict=True
            )
        ]
        return "".join(line + "\n" for line in lines)
