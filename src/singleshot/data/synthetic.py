"""Synthetic shapes: a seeded, on-the-fly detection dataset that needs no download.

Each image has a textured background (gradients, stripes, checks or blotches, with noise) and 1 to
``max_objects`` filled shapes -- circles, squares and triangles -- of random colours, whose sides range from
``min_scale`` to ``max_scale`` of the image side (log-uniform), overlapping each other by at most half of an
earlier shape. Image ``i`` depends only on ``(seed, i)``, so any subset can be rebuilt anywhere, in any order.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageChops, ImageDraw
from torch import Tensor
from torch.utils.data import Dataset

from singleshot.data.dataset import DataBundle
from singleshot.types import Target

CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
#: Seed of the held-out synthetic set (the training set uses the run's seed).
SYNTHETIC_VAL_SEED = 10_000


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
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
    first = Image.new("RGB", (w, h), _colour(rng, 30, 226))
    second = Image.new("RGB", (w, h), _colour(rng, 30, 226))
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


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))  # type: ignore[return-value]  # three ints


def render(seed: int, index: int, size: tuple[int, int], max_objects: int, min_scale: float, max_scale: float):
    """Image ``index`` of the set with ``seed``: ``(uint8 [3, H, W], boxes (N, 4) xyxy pixels, labels (N,))``."""
    rng = np.random.default_rng([seed, index])
    h, w = size
    canvas = _background(rng, h, w)
    draw = ImageDraw.Draw(canvas)
    side_ref = min(h, w)
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
            label = int(rng.integers(len(CLASSES)))
            fill = _colour(rng)
            if label == 0:
                draw.ellipse(box, fill=fill)
            elif label == 1:
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(x1 + bw / 2, y1), (x1 + bw, y1 + bh), (x1, y1 + bh)], fill=fill)
            boxes.append(box)
            labels.append(label + 1)
            break
    image = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).contiguous()
    return image, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64)


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
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if not 0 < min_scale <= max_scale < 1:
            raise ValueError(f"need 0 < min_scale <= max_scale < 1, got {min_scale}, {max_scale}")
        self.num_images = num_images
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.seed = seed
        self.max_objects = max_objects
        self.min_scale = min_scale
        self.max_scale = max_scale
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
        image, boxes, labels = render(self.seed, index, self.size, self.max_objects, self.min_scale, self.max_scale)
        target = Target(
            boxes=boxes,
            labels=labels,
            difficult=torch.zeros(len(labels), dtype=torch.bool),
            image_id=torch.tensor(index),
        )
        return image, target


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
        Image.fromarray(data[i][0].permute(1, 2, 0).numpy()).save(path, quality=quality)
        paths.append(path)
    return paths
