"""Detections from anywhere: a COCO results file (``predictions.json`` of ``singleshot val`` or ``singleshot
predict``, or any program's) read against a dataset split, checked at the boundary."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from singleshot.data.images import DataReport
from singleshot.types import Detection

#: Ids named in an error about ids that the data does not have.
_SHOWN = 5


def read_predictions(
    path: str | Path,
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    file_names: Sequence[str],
    report: DataReport,
) -> list[Detection]:
    """The detections of ``path`` per image of a split, in the split's order.

    Each entry is ``{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}``. An entry is placed by its
    ``file_name`` when it has one and the split has an image of that name (``singleshot predict`` numbers its
    sources and names them), else by ``image_id`` among ``image_ids``; ``category_id`` is one of ``category_ids``
    (label ``k`` for ``category_ids[k - 1]``). Entries with a non-finite number, or a box of negative width or
    height, are counted in ``report`` and dropped.

    Raises:
        ValueError: the file is not a JSON list of such entries, or names images or categories that the split does
            not have (the first few are named).
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the predictions ({exc})") from exc
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of COCO results, got a {type(entries).__name__}")
    index_of_id = {image_id: i for i, image_id in enumerate(image_ids)}
    index_of_name = {name: i for i, name in enumerate(file_names)}
    label_of = {cid: k for k, cid in enumerate(category_ids, start=1)}
    per_image: list[list[tuple[list[float], float, int]]] = [[] for _ in image_ids]
    unknown_images: list[object] = []
    unknown_categories: list[object] = []
    for n, entry in enumerate(entries):
        try:
            x, y, w, h = (float(v) for v in entry["bbox"])
            score, category = float(entry["score"]), entry["category_id"]
            name, image_id = entry.get("file_name"), entry["image_id"]
        except (KeyError, TypeError, ValueError) as exc:
            problem = f"entry {n} is not a COCO result (image_id, category_id, bbox, score): {exc}"
            raise ValueError(f"{path}: {problem}") from exc
        image = index_of_name.get(Path(name).name) if isinstance(name, str) else None
        image = index_of_id.get(image_id) if image is None else image
        if image is None:
            unknown_images.append(name if isinstance(name, str) else image_id)
            continue
        if category not in label_of:
            unknown_categories.append(category)
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h, score)):
            report.add("detection with a NaN or infinite number dropped", path)
            continue
        if w < 0 or h < 0:
            report.add("detection with a negative width or height dropped", path)
            continue
        per_image[image].append(([x, y, x + w, y + h], score, label_of[category]))
    for what, bad, known in (
        ("images", unknown_images, "the split's image ids or file names"),
        ("categories", unknown_categories, f"the data's category ids {list(category_ids)}"),
    ):
        if bad:
            shown = sorted(set(map(str, bad)))[:_SHOWN]
            count = f"{len(bad)} detection{'s' if len(bad) > 1 else ''}"
            raise ValueError(f"{path}: {count} of {what} not in {known}, e.g. {', '.join(shown)}")
    return [_detection(rows) for rows in per_image]


def _detection(rows: list[tuple[list[float], float, int]]) -> Detection:
    """One image's entries as a :class:`~singleshot.types.Detection`, sorted by decreasing score (stable)."""
    rows = sorted(rows, key=lambda r: -r[1])
    return {
        "boxes": torch.tensor([r[0] for r in rows], dtype=torch.float64).reshape(-1, 4),
        "scores": torch.tensor([r[1] for r in rows], dtype=torch.float64),
        "labels": torch.tensor([r[2] for r in rows], dtype=torch.long),
    }


__all__ = ["read_predictions"]
