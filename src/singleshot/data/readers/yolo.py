"""YOLO ``data.yaml`` (named splits): ``path``, one entry per split, and ``names``.

A split entry is a folder of images, a ``.txt`` file listing image paths, or a list of these, relative to
``path`` (itself relative to the YAML file's folder). Each image's labels are in the ``.txt`` file of the same
stem under the ``labels`` folder that mirrors its ``images`` folder: one ``class cx cy w h`` line per object,
class indices from 0, coordinates as fractions of the image's width and height.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from singleshot.data.dataset import Annotations, Record, images_in
from singleshot.data.images import DataReport


def has_named_splits(path: Path) -> bool:
    """Always: ``data.yaml`` names its splits."""
    return True


def read(path: Path, split: str | None, classes: list[str] | None, report: DataReport) -> Annotations:
    """Split ``split`` of the ``data.yaml`` at ``path`` (the file, or a folder holding it), images in listing
    order. Labels are ``class index + 1``; ``classes``, when given, replace the file's ``names``."""
    if split is None:
        raise ValueError(f"{path}: a YOLO data.yaml has named splits; give one")
    yaml_path = path if path.is_file() else path / "data.yaml"
    data: dict[str, Any] = yaml.safe_load(yaml_path.read_text()) or {}
    names = classes or _names(data, yaml_path)
    base = Path(data.get("path") or yaml_path.parent)
    base = base if base.is_absolute() else (yaml_path.parent / base)
    images = _images(base, data.get(split), split, yaml_path)
    return Annotations(_records(images, len(names), report), names, f"YOLO {yaml_path}")


def _names(data: dict[str, Any], source: Path) -> list[str]:
    """Class names from ``names``: a list, or a dict from class index to name."""
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError(f"{source}: 'names' must list the class names")


def _label_path(image: Path) -> Path:
    """``.../images/.../a.jpg`` -> ``.../labels/.../a.txt`` (the last ``images`` folder of the path)."""
    parts = list(image.parts)
    if "images" in parts:
        idx = len(parts) - 1 - parts[::-1].index("images")
        parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def _records(images: list[Path], num_classes: int, report: DataReport) -> list[Record]:
    """A record per image, boxes normalised; bad lines and classes outside 0..num_classes-1 are counted."""
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
                    report.add_unknown_class(cls, label_file, f"object of unknown class {cls} dropped")
                    continue
                boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
                labels.append(cls + 1)
        records.append(Record(image, boxes, labels, [False] * len(labels), normalized=True))
    return records


def _images(base: Path, entry: str | list[str] | None, what: str, source: Path) -> list[Path]:
    """The image paths of a split entry (folders listed sorted, ``.txt`` lists in their order)."""
    if entry is None:
        raise ValueError(f"{source}: no '{what}' entry")
    out: list[Path] = []
    for item in [entry] if isinstance(entry, str) else entry:
        p = (base / item) if not Path(item).is_absolute() else Path(item)
        if p.is_dir():
            out += images_in(p)
        elif p.suffix == ".txt" and p.is_file():
            out += [(base / line.strip()) for line in p.read_text().splitlines() if line.strip()]
        else:
            raise FileNotFoundError(f"{source}: '{what}' path {p} is not a folder or list of images")
    return out
