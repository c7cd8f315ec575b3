"""Shared fixtures and dataset writers: small datasets the tests write themselves, checkable by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from singleshot.data.synthetic import SyntheticShapes

#: The shared BCCD dataset, by the relative path the project uses (../shared from the repo root).
BCCD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "BCCD"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def bccd() -> Path:
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"shared BCCD dataset not found at {BCCD.resolve()} (../shared/data/BCCD from the repo root)")
    return BCCD


def random_image(w: int = 80, h: int = 60, seed: int = 0) -> Image.Image:
    """An RGB image of uniform random pixels (``seed`` fixes it)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


# -- VOC writers ----------------------------------------------------------------------------------------
def voc_object(name: str, box: Sequence[object], difficult: int = 0) -> str:
    """One ``<object>`` of a VOC annotation; ``box`` is (xmin, ymin, xmax, ymax), written as given."""
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def voc_xml(objects: str, w: int = 80, h: int = 60) -> str:
    """A VOC annotation file of an image of ``w`` x ``h`` pixels holding ``objects`` (from :func:`voc_object`)."""
    return f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"


def write_voc_devkit(root: Path, count: int = 6, split: str = "val", size: int = 160) -> Path:
    """A VOC devkit of ``count`` synthetic-shape images (one split), object 0 of image 0 marked difficult."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    data = SyntheticShapes(count, size, seed=5)
    stems = []
    for i in range(count):
        image, target = data[i]
        stem = f"img{i:02d}"
        stems.append(stem)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        objects = "".join(
            voc_object(SyntheticShapes.classes[label - 1], [f"{v:.0f}" for v in box], int(i == 0 and k == 0))
            for k, (box, label) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True))
        )
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(objects, size, size))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems))
    return root


def write_voc_folder(root: Path, count: int, xml: str, annotated: Callable[[int], bool] = lambda i: True) -> Path:
    """A VOC XML folder (no named splits): ``img00.jpg`` ... with random pixels, and ``imgNN.xml`` holding ``xml``
    beside each image ``i`` for which ``annotated(i)``."""
    root.mkdir(parents=True)
    for i in range(count):
        random_image(seed=i).save(root / f"img{i:02d}.jpg")
        if annotated(i):
            (root / f"img{i:02d}.xml").write_text(xml)
    return root
