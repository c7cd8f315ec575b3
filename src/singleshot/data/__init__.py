"""Datasets: every dataset's items are ``(image uint8 [3, H, W], Target)`` (:class:`singleshot.types.Target`).

* :mod:`~singleshot.data.dataset`: the records, the checked :class:`DetectionDataset`, the hold-out rule;
* :mod:`~singleshot.data.readers`: VOC, COCO and YOLO layouts (:func:`open_dataset`, :func:`open_split`);
* :mod:`~singleshot.data.images`: safe image decoding and the :class:`DataReport` of problems;
* :mod:`~singleshot.data.synthetic`: generated shapes;
* :mod:`~singleshot.data.transforms`, :mod:`~singleshot.data.loader`: augmentation and batching.
"""

from singleshot.data.dataset import DataBundle
from singleshot.data.readers import detect_layout, open_dataset, open_split
from singleshot.data.synthetic import SYNTHETIC_VAL_SEED, synthetic_bundle

__all__ = ["SYNTHETIC_VAL_SEED", "DataBundle", "detect_layout", "open_dataset", "open_split", "synthetic_bundle"]
