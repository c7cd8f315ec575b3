"""The one dataset class every reader feeds, and the rules for bad input that it applies.

Readers (:mod:`singleshot.data.readers`) turn annotation files into :class:`Annotations` -- a list of
:class:`Record` s and the class list; :class:`DetectionDataset` checks each image's header at load time and cleans
the boxes, so that problems are found and reported once, before training starts:

========================================  =====================================================================
input                                     outcome (counted in the dataset's :class:`DataReport`)
========================================  =====================================================================
missing, empty, non-image, bomb image     image skipped
truncated / corrupt pixels                found when decoded: image replaced by the next one, counted, warned
gray, palette, RGBA, CMYK, 16-bit         converted to 8-bit RGB
EXIF orientation                          applied, unless the annotation's size is the unrotated image's
unparseable annotation file               image skipped
object without a box, non-numeric values  object dropped
unknown class name (class list given)     object dropped (and listed in ``DataReport.unknown_classes``)
inverted corners                          swapped
box partly outside the image              clipped
zero-area box, box outside the image      dropped
image without objects                     kept, as a background image
========================================  =====================================================================

Layouts without named splits hold out a fixed share of their images for validation, chosen by a hash of the
image file's name (:func:`is_held_out`), so that the split is the same on every machine and every run.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from singleshot.data.images import DataReport, ImageError, conversions, probe, read_image
from singleshot.types import Target

#: File suffixes read as images (lower case; matched case-insensitively where folders are listed).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
#: Share of a split-less dataset held out for validation (chosen by a hash of the file name, so it is stable).
HOLDOUT = 0.1


@dataclass
class Record:
    """One annotated image before checks: boxes in the annotation's own pixel frame (or normalised).

    ``boxes`` is a list of N ``[x1, y1, x2, y2]``; ``labels`` (N) are in 1..C; ``difficult`` (N) marks VOC
    difficult objects and COCO crowd regions.
    """

    image: Path
    boxes: list[list[float]]
    labels: list[int]
    difficult: list[bool]
    _: KW_ONLY
    declared_size: tuple[int, int] | None = None  # (W, H) written in the annotation
    normalized: bool = False  # YOLO: boxes are fractions of the image side
    source_id: int | None = None  # the image's id in the annotation file (COCO)


@dataclass
class Annotations:
    """What a reader returns: the records of one split (or of all images, for layouts without named splits).

    ``class_names`` are the names of labels 1..C; ``category_ids`` the annotation file's id of each of them
    (COCO; ``None``: the labels themselves); ``description`` names the layout and its path, for dataset names
    and messages (``"VOC devkit /data/VOC2007"``); ``pixel_indices`` is True where boxes are inclusive pixel
    indices (VOC); ``supercategories`` the file's supercategory of each class (COCO files that give one for every
    class; ``None`` otherwise).
    """

    records: list[Record]
    class_names: list[str]
    description: str
    category_ids: list[int] | None = None
    pixel_indices: bool = False
    supercategories: list[str] | None = None

    def where(self, keep: Callable[[Record], bool]) -> Annotations:
        """The same annotations with only the records that ``keep`` accepts (order kept)."""
        return replace(self, records=[r for r in self.records if keep(r)])


def is_held_out(image: Path) -> bool:
    """Whether ``image`` is in the validation share of a layout without named splits: a hash of the file's stem,
    so that the choice depends on nothing but the name."""
    return zlib.crc32(image.stem.encode()) % 1000 < HOLDOUT * 1000


def hold_out(annotations: Annotations) -> tuple[Annotations, Annotations]:
    """``(train, val)``: the records of ``annotations`` outside and inside the held-out share, order kept."""
    return (
        annotations.where(lambda r: not is_held_out(r.image)),
        annotations.where(lambda r: is_held_out(r.image)),
    )


def images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by path."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class DataBundle:
    """A dataset's train and val sets, class names (of labels 1..C), a line describing it and its problems."""

    train: Dataset
    val: Dataset
    class_names: list[str]
    description: str
    report: DataReport | None = None  # problems met while reading (None for synthetic data)


@runtime_checkable
class EvaluationData(Protocol):
    """What evaluation needs of a dataset: items ``(uint8 [3, H, W], Target)`` plus the ids to write results with.

    ``image_ids[i]`` is item ``i``'s id in the annotation file; ``category_ids[c - 1]`` the file's id of label
    ``c`` in 1..C; ``pixel_indices`` is True where boxes are inclusive pixel indices (VOC devkit IoU).
    """

    class_names: list[str]
    image_ids: list[int]
    category_ids: list[int]
    pixel_indices: bool

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Tensor, Target]: ...


class DetectionDataset(Dataset):
    """Checked, cleaned records; items are ``(uint8 [3, H, W], Target)``: ``boxes`` (N, 4) float32 xyxy pixels,
    ``labels`` (N,) int64 in 1..C, ``difficult`` (N,) bool, ``image_id`` () the item's index.

    For writing results in the dataset's own terms, :attr:`image_ids` holds each item's id in the annotation file
    (COCO; the index otherwise) and :attr:`category_ids` the file's id of each label 1..C (COCO; the label
    otherwise). :attr:`pixel_indices` is True where boxes are inclusive pixel indices (VOC), which the VOC
    devkit's IoU assumes; :attr:`supercategories` the annotation file's supercategory of each class, or None.
    :attr:`items` holds ``(image path, apply EXIF orientation, target)`` per item.
    """

    def __init__(
        self,
        records: Sequence[Record],
        class_names: Sequence[str],
        report: DataReport,
        name: str,
        category_ids: Sequence[int] | None = None,
        pixel_indices: bool = False,
        supercategories: Sequence[str] | None = None,
    ) -> None:
        self.class_names = list(class_names)
        self.supercategories = list(supercategories) if supercategories is not None else None
        self.report = report
        self.name = name
        self.category_ids = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
        self.pixel_indices = pixel_indices
        self.items: list[tuple[Path, bool, Target]] = []
        self.image_ids: list[int] = []
        for rec in records:
            item = self._check(rec)
            if item is not None:
                self.image_ids.append(len(self.items) if rec.source_id is None else rec.source_id)
                self.items.append(item)
        self._warned: set[int] = set()

    def _check(self, rec: Record) -> tuple[Path, bool, Target] | None:
        """Probe ``rec``'s image and clean its boxes (problems to the report); ``None`` when the image is unusable."""
        try:
            info = probe(rec.image)
        except ImageError as exc:
            self.report.add(f"image skipped: {exc.problem}", rec.image)
            return None
        for fix in conversions(info):
            self.report.add(fix, rec.image)
        apply_exif = True
        w, h = info.width, info.height
        if info.orientation != 1 and rec.declared_size == (info.raw_width, info.raw_height) != (w, h):
            apply_exif, (w, h) = False, (info.raw_width, info.raw_height)
            self.report.add("EXIF orientation not applied: annotation matches the unrotated image", rec.image)
        boxes = torch.tensor(rec.boxes, dtype=torch.float64).reshape(-1, 4)  # (N, 4)
        if rec.normalized:
            boxes = boxes * torch.tensor([w, h, w, h], dtype=torch.float64)
        labels = torch.tensor(rec.labels, dtype=torch.int64)  # (N,)
        difficult = torch.tensor(rec.difficult, dtype=torch.bool)  # (N,)
        keep = clean_boxes(boxes, (w, h), self.report, rec.image)
        boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        if labels.numel() == 0:
            self.report.add("image without objects (kept as background)", rec.image)
        return rec.image, apply_exif, Target(boxes=boxes.float(), labels=labels, difficult=difficult)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        """Image ``index`` as ``uint8 [3, H, W]`` and its target; an image that fails to decode is counted, warned
        about once, and replaced by the next decodable one (whose ``image_id`` the target then carries)."""
        for attempt in range(len(self.items)):
            i = (index + attempt) % len(self.items)
            path, apply_exif, target = self.items[i]
            try:
                image = read_image(path, apply_exif=apply_exif)
            except ImageError as exc:
                if i not in self._warned:
                    self._warned.add(i)
                    self.report.add("image unreadable when decoded (replaced by the next one)", path)
                    warnings.warn(f"{exc}; using the next image instead", stacklevel=2)
                continue
            return image, Target(**target, image_id=torch.tensor(i))
        raise ImageError(f"{self.name}: no image of the dataset could be decoded")


def clean_boxes(boxes: Tensor, size: tuple[int, int], report: DataReport, where: Path) -> Tensor:
    """Fix ``boxes`` (N, 4) xyxy in place: swap inverted corners, clip to ``size`` = (W, H).

    Problems are counted in ``report`` at ``where``. Returns the (N,) bool mask of the boxes to keep (finite, not
    of zero area, not wholly outside the image).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    finite = torch.isfinite(boxes).all(dim=1)
    report.add("object with non-finite coordinates dropped", where, int((~finite).sum()))
    inverted = finite & ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    report.add("inverted box corners swapped", where, int(inverted.sum()))
    x1, x2 = torch.minimum(boxes[:, 0], boxes[:, 2]), torch.maximum(boxes[:, 0], boxes[:, 2])
    y1, y2 = torch.minimum(boxes[:, 1], boxes[:, 3]), torch.maximum(boxes[:, 1], boxes[:, 3])
    zero = finite & ((x2 - x1 <= 0) | (y2 - y1 <= 0))
    w, h = size
    clipped = torch.stack([x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)], dim=1)
    outside = finite & ~zero & ((clipped[:, 2] - clipped[:, 0] <= 0) | (clipped[:, 3] - clipped[:, 1] <= 0))
    moved = finite & ~zero & ~outside & (clipped != torch.stack([x1, y1, x2, y2], 1)).any(dim=1)
    report.add("zero-area box dropped", where, int(zero.sum()))
    report.add("box outside the image dropped", where, int(outside.sum()))
    report.add("box clipped to the image", where, int(moved.sum()))
    boxes.copy_(torch.where(finite[:, None], clipped, boxes))
    return finite & ~zero & ~outside
