"""VOC, COCO and YOLO readers, sharing one dataset class and one set of rules for bad input.

Every reader turns its annotations into :class:`Record` s; :class:`DetectionDataset` checks each image's header
at load time and cleans the boxes, so that problems are found and reported once, before training starts:

========================================  =====================================================================
input                                     outcome (counted in the dataset's :class:`DataReport`)
========================================  =====================================================================
missing, empty, non-image, bomb image     image skipped
truncated / corrupt pixels                found when decoded: image replaced by the next one, counted, warned
gray, palette, RGBA, CMYK, 16-bit         converted to 8-bit RGB
EXIF orientation                          applied, unless the annotation's size is the unrotated image's
unparseable annotation file               image skipped
object without a box, non-numeric values  object dropped
unknown class name (class list given)     object dropped
inverted corners                          swapped
box partly outside the image              clipped
zero-area box, box outside the image      dropped
image without objects                     kept, as a background image
========================================  =====================================================================
"""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor
from torch.utils.data import Dataset

from singleshot.data import DataBundle
from singleshot.data.images import DataReport, ImageError, conversions, probe, read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
#: Share of a split-less dataset held out for validation (chosen by a hash of the file name, so it is stable).
HOLDOUT = 0.1


@dataclass
class Record:
    """One annotated image before checks: boxes in the annotation's own pixel frame (or normalised)."""

    image: Path
    boxes: list[list[float]]
    labels: list[int]
    difficult: list[bool]
    declared_size: tuple[int, int] | None = None  # (W, H) written in the annotation
    normalized: bool = False  # YOLO: boxes are fractions of the image side
    source_id: int | None = None  # the image's id in the annotation file (COCO)


class DetectionDataset(Dataset):
    """Checked, cleaned records; items are ``(uint8 [3, H, W], {"boxes", "labels", "difficult", "image_id"})``.

    ``image_id`` is the item's index. For writing results in the dataset's own terms, :attr:`image_ids` holds
    each item's id in the annotation file (COCO; the index otherwise) and :attr:`category_ids` the file's id of
    each label 1..C (COCO; the label otherwise). :attr:`pixel_indices` is True where boxes are inclusive pixel
    indices (VOC), which the VOC devkit's IoU assumes.
    """

    def __init__(
        self,
        records: Sequence[Record],
        class_names: Sequence[str],
        report: DataReport,
        name: str,
        category_ids: Sequence[int] | None = None,
        pixel_indices: bool = False,
    ) -> None:
        self.class_names = list(class_names)
        self.report = report
        self.name = name
        self.category_ids = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
        self.pixel_indices = pixel_indices
        self.items: list[tuple[Path, bool, dict[str, Tensor]]] = []
        self.image_ids: list[int] = []
        for rec in records:
            item = self._check(rec)
            if item is not None:
                self.image_ids.append(len(self.items) if rec.source_id is None else rec.source_id)
                self.items.append(item)
        self._warned: set[int] = set()

    def _check(self, rec: Record) -> tuple[Path, bool, dict[str, Tensor]] | None:
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
        boxes = torch.tensor(rec.boxes, dtype=torch.float64).reshape(-1, 4)
        if rec.normalized:
            boxes = boxes * torch.tensor([w, h, w, h], dtype=torch.float64)
        labels = torch.tensor(rec.labels, dtype=torch.int64)
        difficult = torch.tensor(rec.difficult, dtype=torch.bool)
        keep = clean_boxes(boxes, (w, h), self.report, rec.image)
        boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        if labels.numel() == 0:
            self.report.add("image without objects (kept as background)", rec.image)
        target = {"boxes": boxes.float(), "labels": labels, "difficult": difficult}
        return rec.image, apply_exif, target

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
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
            return image, {**target, "image_id": torch.tensor(i)}
        raise ImageError(f"{self.name}: no image of the dataset could be decoded")


def clean_boxes(boxes: Tensor, size: tuple[int, int], report: DataReport, where: Path) -> Tensor:
    """Fix boxes in place (swap inverted corners, clip to ``size`` = (W, H)); returns the mask of boxes kept."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    finite = torch.isfinite(boxes).all(dim=1)
    for _ in range(int((~finite).sum())):
        report.add("object with non-finite coordinates dropped", where)
    inverted = finite & ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    for _ in range(int(inverted.sum())):
        report.add("inverted box corners swapped", where)
    x1, x2 = torch.minimum(boxes[:, 0], boxes[:, 2]), torch.maximum(boxes[:, 0], boxes[:, 2])
    y1, y2 = torch.minimum(boxes[:, 1], boxes[:, 3]), torch.maximum(boxes[:, 1], boxes[:, 3])
    zero = finite & ((x2 - x1 <= 0) | (y2 - y1 <= 0))
    w, h = size
    clipped = torch.stack([x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)], dim=1)
    outside = finite & ~zero & ((clipped[:, 2] - clipped[:, 0] <= 0) | (clipped[:, 3] - clipped[:, 1] <= 0))
    moved = finite & ~zero & ~outside & (clipped != torch.stack([x1, y1, x2, y2], 1)).any(dim=1)
    for name, mask in (
        ("zero-area box dropped", zero),
        ("box outside the image dropped", outside),
        ("box clipped to the image", moved),
    ):
        for _ in range(int(mask.sum())):
            report.add(name, where)
    boxes.copy_(torch.where(finite[:, None], clipped, boxes))
    return finite & ~zero & ~outside


def _holdout(path: Path) -> bool:
    return zlib.crc32(path.stem.encode()) % 1000 < HOLDOUT * 1000


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# -- VOC ------------------------------------------------------------------------------------------------
def parse_voc_xml(path: Path, report: DataReport) -> tuple[list[tuple[str, list[float], bool]], tuple[int, int] | None]:
    """Objects ``(name, [x1, y1, x2, y2], difficult)`` and the declared ``(W, H)`` of a VOC XML file."""
    root = ET.parse(path).getroot()
    size = None
    try:
        w, h = int(float(root.findtext("size/width", ""))), int(float(root.findtext("size/height", "")))
        size = (w, h) if w > 0 and h > 0 else None
    except ValueError:
        pass
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name:
            report.add("object without a class name dropped", path)
            continue
        if box is None:
            report.add("object without <bndbox> dropped", path)
            continue
        try:
            coords = [float(box.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            report.add("object with non-numeric box values dropped", path)
            continue
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true", "True")
        objects.append((name, coords, difficult))
    return objects, size


def _voc_records(pairs: list[tuple[Path, Path]], classes: list[str] | None, report: DataReport):
    parsed = []
    for image, xml in pairs:
        try:
            parsed.append((image, xml, *parse_voc_xml(xml, report)))
        except (ET.ParseError, OSError):
            report.add("image skipped: annotation file unreadable", xml)
    names = classes or sorted({name for _, _, objects, _ in parsed for name, _, _ in objects})
    index = {n: i + 1 for i, n in enumerate(names)}
    records = []
    for image, xml, objects, size in parsed:
        boxes, labels, difficult = [], [], []
        for name, coords, diff in objects:
            if name not in index:
                report.add(f"object of unknown class '{name}' dropped", xml)
                continue
            boxes.append(coords)
            labels.append(index[name])
            difficult.append(diff)
        records.append(Record(image, boxes, labels, difficult, declared_size=size))
    return records, names


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _voc_devkit_pairs(root: Path, split: str, report: DataReport) -> list[tuple[Path, Path]]:
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise FileNotFoundError(f"{root}: no split '{split}' ({split_file} missing); available: {available}")
    pairs = []
    for stem in split_file.read_text().split():
        xml = root / "Annotations" / f"{stem}.xml"
        image = _find_image(root / "JPEGImages", stem)
        if not xml.is_file() or image is None:
            report.add("image skipped: listed in the split but image or annotation missing", xml)
            continue
        pairs.append((image, xml))
    return pairs


def _voc_plain_pairs(root: Path, report: DataReport) -> list[tuple[Path, Path]]:
    """Images with XML files beside them, or in a sibling Annotations/annotations/labels folder."""
    image_dirs = [d for d in (root / "images", root / "JPEGImages", root) if d.is_dir()]
    xml_dirs = [d for d in (root / "Annotations", root / "annotations", root / "labels", root) if d.is_dir()]
    pairs = []
    for image in _images_in(image_dirs[0]):
        xml = next((d / f"{image.stem}.xml" for d in xml_dirs if (d / f"{image.stem}.xml").is_file()), None)
        if xml is None:
            report.add("image without an annotation file (kept as background)", image)
            pairs.append((image, None))
            continue
        pairs.append((image, xml))
    return pairs  # type: ignore[return-value]


def is_voc_devkit(path: Path) -> bool:
    return (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


def is_voc_plain(path: Path) -> bool:
    folders = [path, path / "Annotations", path / "annotations", path / "labels"]
    return path.is_dir() and any(any(d.glob("*.xml")) for d in folders if d.is_dir())


def open_voc(root: Path, train_split: str, val_split: str, classes: list[str] | None) -> DataBundle:
    report = DataReport()
    if is_voc_devkit(root) and (root / "ImageSets" / "Main").is_dir():
        train_pairs = _voc_devkit_pairs(root, train_split, report)
        val_pairs = train_pairs if val_split == train_split else _voc_devkit_pairs(root, val_split, report)
        layout = "VOC devkit"
    else:
        pairs = _voc_plain_pairs(root, report)
        train_pairs = [p for p in pairs if not _holdout(p[0])]
        val_pairs = [p for p in pairs if _holdout(p[0])]
        layout = f"VOC XML folder ({100 * HOLDOUT:.0f}% held out for validation)"
    train_records, names = _voc_records([p for p in train_pairs if p[1]], classes, report)
    train_records += [Record(p[0], [], [], []) for p in train_pairs if p[1] is None]
    if val_pairs is train_pairs:
        val_records = train_records
    else:
        val_records, _ = _voc_records([p for p in val_pairs if p[1]], names, report)
        val_records += [Record(p[0], [], [], []) for p in val_pairs if p[1] is None]
    return _bundle(train_records, val_records, names, report, f"{layout} {root}", pixel_indices=True)


# -- COCO -----------------------------------------------------------------------------------------------
def _coco_records(json_path: Path, image_dir: Path, classes: list[str] | None, report: DataReport):
    try:
        data = json.loads(json_path.read_text())
        categories = sorted(data["categories"], key=lambda c: c["id"])
        images = {im["id"]: im for im in data["images"]}
        annotations = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{json_path}: not a COCO instances file ({exc})") from exc
    names = classes or [c["name"] for c in categories]
    label_of = {c["id"]: names.index(c["name"]) + 1 for c in categories if c["name"] in names}
    category_of = {label: cid for cid, label in label_of.items()}
    category_ids = [category_of.get(label, label) for label in range(1, len(names) + 1)]
    per_image: dict[int, list[dict]] = {i: [] for i in images}
    for ann in annotations:
        per_image.setdefault(ann.get("image_id"), []).append(ann)
    records = []
    for image_id, anns in per_image.items():
        if image_id not in images:
            report.add("annotation for an unknown image id dropped", json_path)
            continue
        im = images[image_id]
        boxes, labels, difficult = [], [], []
        for ann in anns:
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                report.add("object with a missing or non-numeric bbox dropped", json_path)
                continue
            if ann.get("category_id") not in label_of:
                report.add(f"object of unknown category id {ann.get('category_id')} dropped", json_path)
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(label_of[ann["category_id"]])
            difficult.append(bool(ann.get("iscrowd", 0)))  # crowd regions: not trained on, ignored by evaluation
        size = (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else None
        records.append(
            Record(image_dir / im["file_name"], boxes, labels, difficult, declared_size=size, source_id=image_id)
        )
    return records, names, category_ids


def _coco_split(root: Path, split: str) -> tuple[Path, Path]:
    candidates = sorted((root / "annotations").glob(f"instances_{split}*.json"))
    if not candidates:
        raise FileNotFoundError(f"{root}: no annotations/instances_{split}*.json for split '{split}'")
    json_path = candidates[0]
    stem = json_path.stem.removeprefix("instances_")
    image_dir = next((d for d in (root / stem, root / "images" / stem, root / "images") if d.is_dir()), root / stem)
    return json_path, image_dir


def open_coco(path: Path, train_split: str, val_split: str, classes: list[str] | None) -> DataBundle:
    report = DataReport()
    if path.is_file():  # one instances file: hold out a share for validation
        image_dir = next(
            (d for d in (path.parent / path.stem.removeprefix("instances_"), path.parent / "images", path.parent)
             if d.is_dir()),
            path.parent,
        )  # fmt: skip
        records, names, category_ids = _coco_records(path, image_dir, classes, report)
        train = [r for r in records if not _holdout(r.image)]
        val = [r for r in records if _holdout(r.image)]
        return _bundle(train, val, names, report, f"COCO {path}", category_ids=category_ids)
    train, names, category_ids = _coco_records(*_coco_split(path, train_split), classes, report)
    val = train if val_split == train_split else _coco_records(*_coco_split(path, val_split), names, report)[0]
    return _bundle(train, val, names, report, f"COCO {path}", category_ids=category_ids)


# -- YOLO -----------------------------------------------------------------------------------------------
def _yolo_names(data: dict, source: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError(f"{source}: 'names' must list the class names")


def _label_path(image: Path) -> Path:
    parts = list(image.parts)
    if "images" in parts:
        idx = len(parts) - 1 - parts[::-1].index("images")
        parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_records(images: list[Path], num_classes: int, report: DataReport) -> list[Record]:
    records = []
    for image in images:
        label_file = _label_path(image)
        boxes, labels = [], []
        if label_file.is_file():
            for line in label_file.read_text().splitlines():
                fields = line.split()
                if not fields:
                    continue
                try:
                    cls, cx, cy, w, h = int(fields[0]), *(float(v) for v in fields[1:5])
                    if len(fields) < 5:
                        raise ValueError
                except ValueError:
                    report.add("label line with missing or non-numeric values dropped", label_file)
                    continue
                if not 0 <= cls < num_classes:
                    report.add(f"object of unknown class {cls} dropped", label_file)
                    continue
                boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
                labels.append(cls + 1)
        records.append(Record(image, boxes, labels, [False] * len(labels), normalized=True))
    return records


def _yolo_images(base: Path, entry: str | list[str] | None, what: str, source: Path) -> list[Path]:
    if entry is None:
        raise ValueError(f"{source}: no '{what}' entry")
    out: list[Path] = []
    for item in [entry] if isinstance(entry, str) else entry:
        p = (base / item) if not Path(item).is_absolute() else Path(item)
        if p.is_dir():
            out += _images_in(p)
        elif p.suffix == ".txt" and p.is_file():
            out += [(base / line.strip()) for line in p.read_text().splitlines() if line.strip()]
        else:
            raise FileNotFoundError(f"{source}: '{what}' path {p} is not a folder or list of images")
    return out


def open_yolo(path: Path, train_split: str, val_split: str, classes: list[str] | None) -> DataBundle:
    yaml_path = path if path.is_file() else path / "data.yaml"
    data = yaml.safe_load(yaml_path.read_text()) or {}
    names = classes or _yolo_names(data, yaml_path)
    base = Path(data.get("path") or yaml_path.parent)
    base = base if base.is_absolute() else (yaml_path.parent / base)
    report = DataReport()
    train = _yolo_records(_yolo_images(base, data.get(train_split), train_split, yaml_path), len(names), report)
    if val_split == train_split:
        val = train
    else:
        val = _yolo_records(_yolo_images(base, data.get(val_split), val_split, yaml_path), len(names), report)
    return _bundle(train, val, names, report, f"YOLO {yaml_path}")


# -- detection ------------------------------------------------------------------------------------------
def _bundle(
    train: list[Record],
    val: list[Record],
    names: list[str],
    report: DataReport,
    desc: str,
    category_ids: list[int] | None = None,
    pixel_indices: bool = False,
) -> DataBundle:
    if not names:
        raise ValueError(f"{desc}: no classes found (no objects in the annotations, and no class list given)")
    train_set = DetectionDataset(train, names, report, f"{desc} [train]", category_ids, pixel_indices)
    val_set = (
        train_set
        if val is train
        else DetectionDataset(val, names, report, f"{desc} [val]", category_ids, pixel_indices)
    )
    for split, ds in (("train", train_set), ("val", val_set)):
        if len(ds) == 0:
            raise ValueError(f"{desc}: the {split} split has no usable images\n{report.summary('problems')}")
    return DataBundle(train_set, val_set, names, f"{desc}: {len(train_set)} train, {len(val_set)} val images", report)


def detect_format(path: Path) -> str:
    """``voc``, ``coco`` or ``yolo`` for a dataset path; a clear error when nothing matches."""
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
    elif is_voc_devkit(path) or is_voc_plain(path):
        return "voc"
    raise ValueError(
        f"{path}: not a dataset layout singleshot knows. Expected one of: a VOC year folder "
        "(Annotations/, JPEGImages/, ImageSets/Main/<split>.txt); a folder of images with VOC XML files beside them "
        "or in Annotations/; a COCO folder (annotations/instances_<split>*.json + image folders) or instances "
        "JSON file; a YOLO data.yaml (or a folder holding one) with train/val/names."
    )


def open_split(
    path: str | Path, split: str = "val", classes: list[str] | None = None
) -> tuple[DetectionDataset, DataReport]:
    """One split of a dataset (for evaluation): a named split where the layout has them (VOC devkit, COCO
    folder, YOLO ``data.yaml``), else ``train`` / ``val`` of the held-out share of a plain folder or file."""
    path = Path(path)
    fmt = detect_format(path)
    named = (
        (fmt == "voc" and is_voc_devkit(path) and (path / "ImageSets" / "Main").is_dir())
        or (fmt == "coco" and path.is_dir())
        or fmt == "yolo"
    )
    if named:
        bundle = open_dataset(path, split, split, classes)
        dataset: DetectionDataset = bundle.val  # type: ignore[assignment]
        dataset.name = f"{dataset.name.rsplit(' [', 1)[0]} [{split}]"
        return dataset, bundle.report
    if split not in ("train", "val"):
        raise ValueError(f"{path}: this layout has no named splits; use split 'val' (held-out share) or 'train'")
    bundle = open_dataset(path, "train", "val", classes)
    return (bundle.val if split == "val" else bundle.train), bundle.report  # type: ignore[return-value]


def open_dataset(
    path: str | Path, train_split: str = "train", val_split: str = "val", classes: list[str] | None = None
):
    """Open a dataset in any supported format (auto-detected) as train and validation sets."""
    path = Path(path)
    opener = {"voc": open_voc, "coco": open_coco, "yolo": open_yolo}[detect_format(path)]
    return opener(path, train_split, val_split, classes)
