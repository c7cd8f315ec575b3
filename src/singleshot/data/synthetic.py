"""Synthetic shapes: a seeded, on-the-fly detection dataset that needs no download.

Each image has a textured background (gradients, stripes, checks or blotches, with noise) and 1 to
``max_objects`` filled shapes -- circles, squares and triangles -- of random colours, whose sides range from
``min_scale`` to ``max_scale`` of the image side (log-uniform), overlapping each other by at most half of an
earlier shape. Image ``i`` depends only on ``(seed, i)``, so any subset can be rebuilt anywhere, in any order.

Optional clutter: unlabelled outlines, rings, crosses and strokes of the objects' sizes, drawn under them, that a
detector must learn to ignore. :func:`small_objects` is the large-image set of issue 21 (1920x1080 photos with 8-32
px shapes among clutter, where a whole-image resize to 300 px leaves nothing to detect), and :func:`write_coco`
saves any of these sets as a COCO folder that ``singleshot train/val/priors --data`` read like a user's data.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageChops, ImageDraw
from torch import Tensor
from torch.utils.data import Dataset

from singleshot.data.dataset import DataBundle
from singleshot.data.images import save_image
from singleshot.types import Target

CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
#: Seed of the held-out synthetic set (the training set uses the run's seed).
SYNTHETIC_VAL_SEED = 10_000
#: The small-object set: image size (H, W), object sides in pixels, objects and clutter items per image.
SMALL_OBJECTS_SIZE = (1080, 1920)
SMALL_OBJECTS_SIDES = (8.0, 32.0)
SMALL_OBJECTS_MAX = 150
SMALL_OBJECTS_CLUTTER = 60


def background_texture(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """An RGB texture of ``h x w`` pixels: two colours blended by a pattern, plus Gaussian noise."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    kind = rng.integers(4)
    if kind == 0:  # linear gradient
        angle = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(angle) + yy * math.sin(angle)) / max(h, w)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 1:  # stripes
        period = rng.uniform(6, 40)
        angle = rng.uniform(0, math.pi)
        t = 0.5 + 0.5 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period))
    elif kind == 2:  # checks
        cell = int(rng.integers(8, 48))
        t = ((xx // cell + yy // cell) % 2).astype(np.float32)
    else:  # blotches: low-resolution noise, upsampled
        small = rng.uniform(0, 1, size=(max(2, h // 32), max(2, w // 32))).astype(np.float32)
        mask = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    if kind != 3:
        mask = Image.fromarray((np.broadcast_to(t, (h, w)) * 255).astype(np.uint8))
    first = Image.new("RGB", (w, h), random_colour(rng, 30, 226))
    second = Image.new("RGB", (w, h), random_colour(rng, 30, 226))
    img = Image.composite(second, first, mask)
    bank = _noise_bank(h, w)
    dx, dy = int(rng.integers(w + 1)), int(rng.integers(h + 1))
    noise = Image.blend(Image.new("L", (w, h), 128), bank.crop((dx, dy, dx + w, dy + h)), float(rng.uniform(0.15, 1)))
    return ImageChops.add(img, Image.merge("RGB", (noise, noise, noise)), scale=1.0, offset=-128)


@functools.cache
def _noise_bank(h: int, w: int) -> Image.Image:
    """A fixed ``2h x 2w`` field of Gaussian noise (sigma 14 around 128), cropped at random offsets per image."""
    field = np.random.default_rng(12345).standard_normal((2 * h, 2 * w), dtype=np.float32) * 14 + 128
    return Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))


def random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))  # type: ignore[return-value]  # three ints


def render(
    seed: int,
    index: int,
    size: tuple[int, int],
    max_objects: int,
    min_scale: float,
    max_scale: float,
    clutter: int = 0,
):
    """Image ``index`` of the set with ``seed``: ``(uint8 [3, H, W], boxes (N, 4) xyxy pixels, labels (N,))``.

    ``clutter`` unlabelled items are drawn under the shapes from a random stream of their own, so a set without
    clutter is the same whatever the clutter of another.
    """
    rng = np.random.default_rng([seed, index])
    h, w = size
    canvas = background_texture(rng, h, w)
    draw = ImageDraw.Draw(canvas)
    side_ref = min(h, w)
    if clutter:
        _draw_clutter(draw, np.random.default_rng([seed, index, 1]), h, w, clutter, side_ref, min_scale, max_scale)
    boxes: list[list[float]] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            side = side_ref * math.exp(rng.uniform(math.log(min_scale), math.log(max_scale)))
            bw = side * rng.uniform(0.85, 1.15)
            bh = side * rng.uniform(0.85, 1.15)
            if bw >= w - 1 or bh >= h - 1:
                continue
            x1 = rng.uniform(0, w - bw)
            y1 = rng.uniform(0, h - bh)
            box = [x1, y1, x1 + bw, y1 + bh]
            if boxes and not _acceptable(box, boxes):
                continue
            label = int(rng.integers(len(CLASSES))) + 1
            draw_shape(draw, label, x1, y1, bw, bh, random_colour(rng))
            boxes.append(box)
            labels.append(label)
            break
    image = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).contiguous()
    return image, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64)


def draw_shape(
    draw: ImageDraw.ImageDraw, label: int, x1: float, y1: float, w: float, h: float, fill: tuple[int, int, int]
) -> None:
    """Draw shape ``label`` (1 circle, 2 square, 3 triangle pointing up) filling the box at ``(x1, y1)`` of
    ``w x h`` pixels."""
    box = [x1, y1, x1 + w, y1 + h]
    if label == 1:
        draw.ellipse(box, fill=fill)
    elif label == 2:
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x1 + w / 2, y1), (x1 + w, y1 + h), (x1, y1 + h)], fill=fill)


def _draw_clutter(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    h: int,
    w: int,
    count: int,
    side_ref: float,
    min_scale: float,
    max_scale: float,
) -> None:
    """``count`` unlabelled items of the shapes' sizes: hollow circles and squares, crosses and straight strokes."""
    for _ in range(count):
        side = side_ref * math.exp(rng.uniform(math.log(min_scale), math.log(max_scale)))
        x1, y1 = rng.uniform(0, max(w - side, 1)), rng.uniform(0, max(h - side, 1))
        box = [x1, y1, x1 + side, y1 + side]
        colour, width = random_colour(rng), max(1, round(side / 8))
        kind = rng.integers(4)
        if kind == 0:
            draw.ellipse(box, outline=colour, width=width)
        elif kind == 1:
            draw.rectangle(box, outline=colour, width=width)
        elif kind == 2:
            draw.line([(x1, y1), (x1 + side, y1 + side)], fill=colour, width=width)
            draw.line([(x1, y1 + side), (x1 + side, y1)], fill=colour, width=width)
        else:
            angle = rng.uniform(0, math.pi)
            length = 2 * side
            dx, dy = length * math.cos(angle), length * math.sin(angle)
            draw.line([(x1, y1), (x1 + dx, y1 + dy)], fill=colour, width=width)


def _acceptable(box: list[float], earlier: list[list[float]]) -> bool:
    """A new shape may cover at most half of any earlier one (and not sit almost exactly on it).

    float32 NumPy, the same arithmetic as torchvision's ``box_iou`` (a tenth of its cost on such tiny inputs).
    """
    new = np.asarray(box, dtype=np.float32)
    old = np.asarray(earlier, dtype=np.float32)
    w = (np.minimum(new[2], old[:, 2]) - np.maximum(new[0], old[:, 0])).clip(min=0)
    h = (np.minimum(new[3], old[:, 3]) - np.maximum(new[1], old[:, 1])).clip(min=0)
    inter = w * h
    old_area = (old[:, 2] - old[:, 0]) * (old[:, 3] - old[:, 1])
    new_area = (new[2] - new[0]) * (new[3] - new[1])
    iou = inter / (new_area + old_area - inter)
    return bool((inter <= np.float32(0.5) * old_area).all() and (iou < 0.5).all())


class SyntheticShapes(Dataset):
    """``num_images`` synthetic images of ``size`` pixels (see the module docstring).

    Items are ``(image uint8 [3, H, W], Target)`` like every dataset here: ``boxes`` (N, 4) float32 xyxy pixels,
    ``labels`` (N,) int64 in 1..C, ``difficult`` (N,) bool (all False), ``image_id`` () the index. It satisfies
    :class:`~singleshot.data.dataset.EvaluationData`: image ids are the indices, category ids the labels 1..C, and
    boxes are continuous coordinates (``pixel_indices`` False).
    """

    classes: tuple[str, ...] = CLASSES

    def __init__(
        self,
        num_images: int = 1000,
        size: int | tuple[int, int] = 320,
        seed: int = 0,
        max_objects: int = 6,
        min_scale: float = 0.08,
        max_scale: float = 0.8,
        clutter: int = 0,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if not 0 < min_scale <= max_scale < 1:
            raise ValueError(f"need 0 < min_scale <= max_scale < 1, got {min_scale}, {max_scale}")
        if clutter < 0:
            raise ValueError(f"clutter must be >= 0, got {clutter}")
        self.num_images = num_images
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.seed = seed
        self.max_objects = max_objects
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.clutter = clutter
        self.root = f"synthetic:shapes(seed={seed}, n={num_images})"
        self.class_names: list[str] = list(CLASSES)
        self.image_ids: list[int] = list(range(num_images))
        self.category_ids: list[int] = list(range(1, len(CLASSES) + 1))
        self.pixel_indices = False

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        image, boxes, labels = render(
            self.seed, index, self.size, self.max_objects, self.min_scale, self.max_scale, self.clutter
        )
        target = Target(
            boxes=boxes,
            labels=labels,
            difficult=torch.zeros(len(labels), dtype=torch.bool),
            image_id=torch.tensor(index),
        )
        return image, target


def small_objects(num_images: int, seed: int = 0) -> SyntheticShapes:
    """The small-object set: ``num_images`` images of :data:`SMALL_OBJECTS_SIZE` with up to
    :data:`SMALL_OBJECTS_MAX` shapes of :data:`SMALL_OBJECTS_SIDES` pixels (give or take 15% per side) among
    :data:`SMALL_OBJECTS_CLUTTER` clutter items."""
    short = min(SMALL_OBJECTS_SIZE)
    low, high = SMALL_OBJECTS_SIDES
    return SyntheticShapes(
        num_images,
        SMALL_OBJECTS_SIZE,
        seed=seed,
        max_objects=SMALL_OBJECTS_MAX,
        min_scale=low / short,
        max_scale=high / short,
        clutter=SMALL_OBJECTS_CLUTTER,
    )


class ShapeSet(Protocol):
    """What :func:`write_coco` writes: a sized set of ``(image, target)`` items of one image ``size`` ``(H, W)``."""

    size: tuple[int, ...]
    class_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]: ...


def write_coco(splits: dict[str, ShapeSet], folder: str | Path, quality: int = 92) -> Path:
    """Save synthetic sets as a COCO folder: ``<folder>/<split>/<split>_000000.jpg``... and
    ``<folder>/annotations/instances_<split>.json`` per entry of ``splits`` (e.g. ``{"train": ..., "val": ...}``),
    boxes as COCO ``[x, y, w, h]`` in pixels; returns ``folder``. Readable by every ``--data`` of singleshot."""
    folder = Path(folder)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    for split, data in splits.items():
        (folder / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(len(data)):
            image, target = data[i]
            name = f"{split}_{i:06d}.jpg"
            save_image(image, folder / split / name, quality=quality)
            images.append({"id": i + 1, "file_name": name, "height": data.size[0], "width": data.size[1]})
            for (x1, y1, x2, y2), label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": label,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                    }
                )
        categories = [{"id": k + 1, "name": name} for k, name in enumerate(data.class_names)]
        content = {"images": images, "annotations": annotations, "categories": categories}
        (folder / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
    return folder


def write_small_objects(folder: str | Path, train: int = 300, val: int = 30, seed: int = 0) -> Path:
    """The small-object set on disk as a COCO folder (``train`` and ``val`` splits, val from another seed), for
    ``singleshot train --data <folder> --tile 320`` and ``singleshot val --data <folder> --slice 320``."""
    splits = {"train": small_objects(train, seed), "val": small_objects(val, SYNTHETIC_VAL_SEED + seed)}
    return write_coco(splits, folder)


def synthetic_bundle(num_train: int, num_val: int, image_size: tuple[int, int], seed: int = 0) -> DataBundle:
    """Synthetic shapes for training and a held-out set from another seed."""
    train = SyntheticShapes(num_train, image_size, seed=seed)
    val = SyntheticShapes(num_val, image_size, seed=SYNTHETIC_VAL_SEED + seed)
    return DataBundle(train, val, list(CLASSES), f"synthetic shapes ({num_train} train, {num_val} val)")


def save_images(
    folder: str | Path,
    count: int = 8,
    size: int | tuple[int, int] = 320,
    seed: int = SYNTHETIC_VAL_SEED,
    quality: int = 92,
    prefix: str = "shapes",
) -> list[Path]:
    """Write ``count`` synthetic images of ``size`` (a side, or ``(H, W)``; by default the held-out set's first
    ones) as JPEG files ``<prefix>_000.jpg``... to ``folder``, for trying ``singleshot predict`` without a dataset or
    for timing; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = SyntheticShapes(count, size, seed=seed)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}_{i:03d}.jpg"
        save_image(data[i][0], path, quality=quality)
        paths.append(path)
    return paths
