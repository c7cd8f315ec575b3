"""Feeding a model: augmented views of a dataset, a resumable epoch sampler, batching."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from singleshot.data.transforms import DetectionTransform, seeded
from singleshot.types import Target


class Augmented(Dataset):
    """``dataset`` seen through ``transform``; sample ``i`` of epoch ``e`` is augmented with a seed derived from
    ``(seed, e, i)`` only, so a resumed run and any number of loader workers see exactly the same batches.

    ``difficult`` objects (and COCO crowd regions) are removed unless ``keep_difficult``: SSD does not train on
    them, and evaluation ignores them.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: DetectionTransform | Callable[[Tensor, Target], tuple[Tensor, Target]],
        seed: int = 0,
        keep_difficult: bool = False,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.keep_difficult = keep_difficult
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]  # a sized dataset

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        image, target = self.dataset[index]
        if not self.keep_difficult and "difficult" in target and bool(target["difficult"].any()):
            keep = ~target["difficult"]
            target = {
                **target,
                "boxes": target["boxes"][keep],
                "labels": target["labels"][keep],
                "difficult": target["difficult"][keep],
            }
        key = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index
        return seeded(key % (2**63), lambda: self.transform(image, target))


class EpochSampler(Sampler[int]):
    """Shuffles with a seed per epoch, shards across ``world_size`` ranks, and can start mid-epoch.

    Every rank gets ``ceil(n / world_size)`` indices (the permutation is padded by wrapping around), so that all
    ranks run the same number of steps.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use epoch ``epoch``'s order, skipping this rank's first ``start`` indices (resuming mid-epoch)."""
        self.epoch = epoch
        self.start = start

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        per_rank = math.ceil(self.size / self.world_size)
        padded = (order * math.ceil(per_rank * self.world_size / max(self.size, 1)))[: per_rank * self.world_size]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size) - self.start


def collate(batch: list[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """Keep images and targets as lists (the model's data contract)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def make_loader(
    dataset: Dataset, batch_size: int, sampler: Sampler[int], workers: int = 0, drop_last: bool = False
) -> DataLoader:
    """A loader over ``sampler`` with :func:`collate`."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=drop_last,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )
