"""Pascal VOC XML annotations: a VOC devkit year folder (named splits), or a folder of images with XML files.

* devkit: ``Annotations/<id>.xml``, ``JPEGImages/<id>.<ext>``, ``ImageSets/Main/<split>.txt`` listing the ids;
* plain folder (no named splits): images in ``images/``, ``JPEGImages/`` or the folder itself, each with an
  XML file of the same stem beside it or in ``Annotations/``, ``annotations/`` or ``labels/``; images without
  one are kept as background images, after the annotated ones.

Boxes are inclusive pixel indices (``pixel_indices``). Class names, unless given, are the sorted names met.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from singleshot.data.dataset import HOLDOUT, IMAGE_SUFFIXES, Annotations, Record, images_in
from singleshot.data.images import DataReport

#: One parsed object: ``(class name, [x1, y1, x2, y2], difficult)``.
VocObject = tuple[str, list[float], bool]


def is_voc_devkit(path: Path) -> bool:
    """A folder with ``Annotations/`` and ``JPEGImages/`` (a VOC year folder)."""
    return (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


def is_voc_plain(path: Path) -> bool:
    """A folder with XML files in it or in its ``Annotations/``, ``annotations/`` or ``labels/`` folder."""
    folders = [path, path / "Annotations", path / "annotations", path / "labels"]
    return path.is_dir() and any(any(d.glob("*.xml")) for d in folders if d.is_dir())


def has_named_splits(path: Path) -> bool:
    """A devkit with split lists (``ImageSets/Main``); otherwise the folder is read whole and held out."""
    return is_voc_devkit(path) and (path / "ImageSets" / "Main").is_dir()


def read(path: Path, split: str | None, classes: list[str] | None, report: DataReport) -> Annotations:
    """The devkit's ``split``, or (``split`` None) every image of a folder without named splits.

    Records: the images with a readable XML file in listing order, then those without one (background).
    """
    if split is None:
        if has_named_splits(path):
            raise ValueError(f"{path}: a VOC devkit has named splits; give one")
        pairs = _plain_pairs(path, report)
        layout = f"VOC XML folder ({100 * HOLDOUT:.0f}% held out for validation)"
    else:
        pairs = _devkit_pairs(path, split, report)
        layout = "VOC devkit"
    parsed = _parse_all([(image, xml) for image, xml in pairs if xml is not None], report)
    names = classes or sorted({name for _, _, objects, _ in parsed for name, _, _ in objects})
    records = _records(parsed, names, report)
    records += [Record(image, [], [], []) for image, xml in pairs if xml is None]
    return Annotations(records, names, f"{layout} {path}", pixel_indices=True)


def parse_voc_xml(path: Path, report: DataReport) -> tuple[list[VocObject], tuple[int, int] | None]:
    """Objects ``(name, [x1, y1, x2, y2], difficult)`` and the declared ``(W, H)`` of a VOC XML file.

    Objects without a name, a ``<bndbox>`` or numeric coordinates are dropped and counted in ``report``.

    Raises:
        ET.ParseError, OSError: the file cannot be read or parsed.
    """
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


#: A parsed annotation file: ``(image, xml, objects, declared (W, H))``.
_Parsed = tuple[Path, Path, list[VocObject], tuple[int, int] | None]


def _parse_all(pairs: list[tuple[Path, Path]], report: DataReport) -> list[_Parsed]:
    """Parse each ``(image, xml)`` pair; images whose XML cannot be read are skipped and counted."""
    parsed = []
    for image, xml in pairs:
        try:
            parsed.append((image, xml, *parse_voc_xml(xml, report)))
        except (ET.ParseError, OSError):
            report.add("image skipped: annotation file unreadable", xml)
    return parsed


def _records(parsed: list[_Parsed], names: list[str], report: DataReport) -> list[Record]:
    """Records with labels 1..C in the order of ``names``; objects of other classes are dropped and counted."""
    index = {n: i + 1 for i, n in enumerate(names)}
    records = []
    for image, xml, objects, size in parsed:
        boxes, labels, difficult = [], [], []
        for name, coords, diff in objects:
            if name not in index:
                report.add_unknown_class(name, xml, f"object of unknown class '{name}' dropped")
                continue
            boxes.append(coords)
            labels.append(index[name])
            difficult.append(diff)
        records.append(Record(image, boxes, labels, difficult, declared_size=size))
    return records


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _devkit_pairs(root: Path, split: str, report: DataReport) -> list[tuple[Path, Path | None]]:
    """``(image, xml)`` of each id in ``ImageSets/Main/<split>.txt``; ids missing either file are counted."""
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise FileNotFoundError(f"{root}: no split '{split}' ({split_file} missing); available: {available}")
    pairs: list[tuple[Path, Path | None]] = []
    for stem in split_file.read_text().split():
        xml = root / "Annotations" / f"{stem}.xml"
        image = _find_image(root / "JPEGImages", stem)
        if not xml.is_file() or image is None:
            report.add("image skipped: listed in the split but image or annotation missing", xml)
            continue
        pairs.append((image, xml))
    return pairs


def _plain_pairs(root: Path, report: DataReport) -> list[tuple[Path, Path | None]]:
    """``(image, xml or None)`` of every image: XML files beside the images or in a sibling annotation folder."""
    image_dirs = [d for d in (root / "images", root / "JPEGImages", root) if d.is_dir()]
    xml_dirs = [d for d in (root / "Annotations", root / "annotations", root / "labels", root) if d.is_dir()]
    pairs: list[tuple[Path, Path | None]] = []
    for image in images_in(image_dirs[0]):
        xml = next((d / f"{image.stem}.xml" for d in xml_dirs if (d / f"{image.stem}.xml").is_file()), None)
        if xml is None:
            report.add("image without an annotation file (kept as background)", image)
        pairs.append((image, xml))
    return pairs
