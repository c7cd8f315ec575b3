"""COCO instances JSON: a COCO folder (named splits), or a single instances file (no named splits).

* folder: ``annotations/instances_<split>*.json`` (the first match, sorted), images in ``<root>/<name>/``,
  ``<root>/images/<name>/`` or ``<root>/images/``, where ``<name>`` is the file's stem without ``instances_``;
* single file: images in ``<name>/``, ``images/`` or the file's own folder.

Class names, unless given, are the categories' names by increasing category id; ``category_ids`` keeps the
file's id of each label, and records keep each image's id (``source_id``), for writing results in COCO terms.
Crowd regions are kept as ``difficult`` objects (not trained on, ignored by evaluation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from singleshot.data.dataset import Annotations, Record
from singleshot.data.images import DataReport


def has_named_splits(path: Path) -> bool:
    """A folder has named splits; a single instances file is read whole and held out."""
    return path.is_dir()


def read(path: Path, split: str | None, classes: list[str] | None, report: DataReport) -> Annotations:
    """Split ``split`` of a COCO folder, or (``split`` None) every image of a single instances file.

    Records are in the file's image order.
    """
    if split is None:
        if has_named_splits(path):
            raise ValueError(f"{path}: a COCO folder has named splits; give one")
        json_path, image_dir = path, _single_file_images(path)
    else:
        json_path, image_dir = _split_files(path, split)
    return _read_instances(json_path, image_dir, classes, report, f"COCO {path}")


def _single_file_images(json_path: Path) -> Path:
    """The image folder of a single instances file."""
    folders = (json_path.parent / json_path.stem.removeprefix("instances_"), json_path.parent / "images")
    return next((d for d in folders if d.is_dir()), json_path.parent)


def _split_files(root: Path, split: str) -> tuple[Path, Path]:
    """``(instances file, image folder)`` of ``split`` in a COCO folder."""
    candidates = sorted((root / "annotations").glob(f"instances_{split}*.json"))
    if not candidates:
        raise FileNotFoundError(f"{root}: no annotations/instances_{split}*.json for split '{split}'")
    json_path = candidates[0]
    stem = json_path.stem.removeprefix("instances_")
    image_dir = next((d for d in (root / stem, root / "images" / stem, root / "images") if d.is_dir()), root / stem)
    return json_path, image_dir


def _read_instances(
    json_path: Path, image_dir: Path, classes: list[str] | None, report: DataReport, description: str
) -> Annotations:
    """The annotations of ``json_path``; ``category_ids`` holds the file's id of each label 1..C (the label itself
    for a given class that the file has no category of)."""
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
    group_of = {c["name"]: str(c["supercategory"]) for c in categories if c.get("supercategory")}
    supercategories = [group_of[n] for n in names] if all(n in group_of for n in names) else None
    per_image: dict[Any, list[dict[str, Any]]] = {i: [] for i in images}
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
            category = ann.get("category_id")
            if category not in label_of:
                report.add_unknown_class(category, json_path, f"object of unknown category id {category} dropped")
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(label_of[category])
            difficult.append(bool(ann.get("iscrowd", 0)))  # crowd regions: not trained on, ignored by evaluation
        size = (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else None
        records.append(
            Record(image_dir / im["file_name"], boxes, labels, difficult, declared_size=size, source_id=image_id)
        )
    return Annotations(records, names, description, category_ids=category_ids, supercategories=supercategories)
