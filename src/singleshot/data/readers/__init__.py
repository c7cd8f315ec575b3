"""Opening datasets: the layout is detected, its reader reads annotations, and this module -- the one place that
does so -- picks named splits or the hash hold-out and builds the checked :class:`DetectionDataset` s.

Each reader module (:mod:`~singleshot.data.readers.voc`, :mod:`~singleshot.data.readers.coco`,
:mod:`~singleshot.data.readers.yolo`) has the same two functions (:class:`Reader`):

* ``has_named_splits(path)``: whether the layout at ``path`` names its splits (VOC devkit, COCO folder, YOLO);
* ``read(path, split, classes, report)``: the :class:`Annotations` of ``split``, or of every image when
  ``split`` is None (layouts without named splits, whose validation share is then held out here).

Named splits: class names (unless given) and COCO category ids come from the train split; the val split is read
with those names. Without named splits all images are read once, class names come from all of them, and
:func:`~singleshot.data.dataset.hold_out` divides the records. Every annotation file is read once, so each
problem is counted once in the shared :class:`DataReport`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

from singleshot.data.dataset import Annotations, DataBundle, DetectionDataset, hold_out
from singleshot.data.images import DataReport
from singleshot.data.readers import coco, voc, yolo


class Reader(Protocol):
    """The interface of a reader module."""

    def has_named_splits(self, path: Path) -> bool: ...

    def read(self, path: Path, split: str | None, classes: list[str] | None, report: DataReport) -> Annotations: ...


#: The reader module of each dataset layout that :func:`detect_layout` names.
READERS: dict[str, Reader] = {"voc": voc, "coco": coco, "yolo": yolo}
#: The split names of a layout without named splits: the kept share and the held-out share.
HOLDOUT_SPLITS = ("train", "val")


def detect_layout(path: Path) -> str:
    """``voc``, ``coco`` or ``yolo`` for a dataset path; a clear error when nothing matches.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no known layout.
    """
    if not path.exists():
        raise FileNotFoundError(f"dataset path not found: {path}")
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return "yolo"
        if path.suffix == ".json":
            return "coco"
    elif (path / "data.yaml").is_file():
        return "yolo"
    elif any((path / "annotations").glob("instances_*.json")):
        return "coco"
    elif voc.is_voc_devkit(path) or voc.is_voc_plain(path):
        return "voc"
    raise ValueError(
        f"{path}: not a dataset layout singleshot knows. Expected one of: a VOC year folder "
        "(Annotations/, JPEGImages/, ImageSets/Main/<split>.txt); a folder of images with VOC XML files beside them "
        "or in Annotations/; a COCO folder (annotations/instances_<split>*.json + image folders) or instances "
        "JSON file; a YOLO data.yaml (or a folder holding one) with train/val/names."
    )


class _Opened(NamedTuple):
    """A checked train and val set (the same object when they are one split), their report and description."""

    train: DetectionDataset
    val: DetectionDataset
    report: DataReport
    description: str


def _open(
    path: Path,
    reader: Reader,
    splits: tuple[str, str],
    classes: list[str] | None,
) -> _Opened:
    """Read ``splits`` = (train, val) of a named-split layout, or the hold-out of one without, and check them.

    The datasets are named ``f"{description} [{split}]"``: the split's name, or ``train`` / ``val`` for the
    two shares of a hold-out.

    Raises:
        ValueError: no class names, or a split without usable images.
    """
    report = DataReport()
    if reader.has_named_splits(path):
        train = reader.read(path, splits[0], classes, report)
        val = train if splits[1] == splits[0] else reader.read(path, splits[1], train.class_names, report)
        labels = splits
    else:
        train, val = hold_out(reader.read(path, None, classes, report))
        labels = HOLDOUT_SPLITS
    names, desc = train.class_names, train.description
    if not names:
        raise ValueError(f"{desc}: no classes found (no objects in the annotations, and no class list given)")

    def dataset(annotations: Annotations, label: str) -> DetectionDataset:
        return DetectionDataset(
            annotations.records, names, report, f"{desc} [{label}]", train.category_ids, train.pixel_indices,
            train.supercategories,
        )  # fmt: skip  # positional, in the constructor's order

    train_set = dataset(train, labels[0])
    val_set = train_set if val is train else dataset(val, labels[1])
    for label, ds in zip(labels, (train_set, val_set), strict=True):
        if len(ds) == 0:
            raise ValueError(f"{desc}: the {label} split has no usable images\n{report.summary('problems')}")
    return _Opened(train_set, val_set, report, desc)


def open_dataset(
    path: str | Path, train_split: str = "train", val_split: str = "val", classes: list[str] | None = None
) -> DataBundle:
    """Open a dataset in any supported format (auto-detected) as train and validation sets.

    Layouts with named splits read ``train_split`` and ``val_split`` (the same :class:`DetectionDataset` when
    they are equal); others hold out a share of their images (``train_split`` and ``val_split`` unused). The
    datasets are named ``"<description> [<split>]"``; ``classes`` fixes the class
    list (objects of other classes are dropped), otherwise it comes from the data.
    """
    path = Path(path)
    opened = _open(path, READERS[detect_layout(path)], (train_split, val_split), classes)
    return DataBundle(
        opened.train,
        opened.val,
        opened.train.class_names,
        f"{opened.description}: {len(opened.train)} train, {len(opened.val)} val images",
        opened.report,
    )


def open_split(
    path: str | Path, split: str = "val", classes: list[str] | None = None
) -> tuple[DetectionDataset, DataReport]:
    """One split of a dataset (for evaluation), named ``"<description> [<split>]"``, and its report.

    A named split where the layout has them (VOC devkit, COCO folder, YOLO ``data.yaml``), else ``train`` or
    ``val`` of the held-out share of a plain folder or single file (both are read and checked, as for
    :func:`open_dataset`).

    Raises:
        ValueError: ``split`` is not ``train`` or ``val`` for a layout without named splits.
    """
    path = Path(path)
    reader = READERS[detect_layout(path)]
    if reader.has_named_splits(path):
        opened = _open(path, reader, (split, split), classes)
        return opened.train, opened.report
    if split not in HOLDOUT_SPLITS:
        raise ValueError(f"{path}: this layout has no named splits; use split 'val' (held-out share) or 'train'")
    opened = _open(path, reader, HOLDOUT_SPLITS, classes)
    return (opened.val if split == "val" else opened.train), opened.report


__all__ = ["READERS", "Reader", "detect_layout", "open_dataset", "open_split"]
