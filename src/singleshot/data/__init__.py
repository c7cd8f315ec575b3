"""Datasets: every dataset's items are ``(image uint8 [3, H, W], Target)`` (:class:`singleshot.types.Target`).

* :mod:`~singleshot.data.dataset`: the records, the checked :class:`DetectionDataset`, the hold-out rule;
* :mod:`~singleshot.data.readers`: VOC, COCO and YOLO layouts (:func:`open_dataset`, :func:`open_split`);
* :mod:`~singleshot.data.images`: safe image decoding and the :class:`DataReport` of problems;
* :mod:`~singleshot.data.synthetic`: generated shapes;
* :mod:`~singleshot.data.transforms`, :mod:`~singleshot.data.loader`: augmentation and batching.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from singleshot.data.images import DataReport
from singleshot.data.synthetic import SyntheticShapes

#: Seed of the held-out synthetic set (the training set uses the run's seed).
SYNTHETIC_VAL_SEED = 10_000


@dataclass
class DataBundle:
    """A dataset's train and val sets, class names (of labels 1..C), a line describing it and its problems."""

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


# Re-exported here; imported last because the readers build DataBundles (defined above).
from singleshot.data.readers import detect_format, open_dataset, open_split  # noqa: E402

__all__ = ["SYNTHETIC_VAL_SEED", "DataBundle", "detect_format", "open_dataset", "open_split", "synthetic_bundle"]
