"""Datasets: every reader returns ``(image uint8 [3, H, W], {"boxes", "labels", "difficult", "image_id"})``."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from singleshot.data.images import DataReport
from singleshot.data.synthetic import SyntheticShapes

#: Seed of the held-out synthetic set (the training set uses the run's seed).
SYNTHETIC_VAL_SEED = 10_000


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    class_names: list[str]
    description: str
    report: DataReport | None = None  # problems met while reading (None for synthetic data)


def synthetic_bundle(num_train: int, num_val: int, image_size: tuple[int, int], seed: int = 0) -> DataBundle:
    """Synthetic shapes for training and a held-out set from another seed."""
    train = SyntheticShapes(num_train, image_size, seed=seed)
    val = SyntheticShapes(num_val, image_size, seed=SYNTHETIC_VAL_SEED + seed)
    return DataBundle(train, val, list(SyntheticShapes.classes), f"synthetic shapes ({num_train} train, {num_val} val)")
